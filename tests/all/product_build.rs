//! The product build: `trueup` without its default `demo` feature links no
//! test infrastructure (the bundled emulators, the conformance kit), while
//! the default build does (so this check can fail).

use std::process::{Command, Output};

use crate::support::repo_root;

/// Crates only the default (`demo`) build may link.
const TEST_INFRASTRUCTURE: [&str; 2] = ["trueup-emulators", "trueup-conformance"];

/// Runs cargo (the one running these tests, else `cargo` on the path) from
/// the workspace root with `args`.
fn cargo(args: &[&str]) -> Output {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    Command::new(&cargo)
        .current_dir(repo_root())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {} {args:?}: {e}", cargo.display()))
}

/// The crates `trueup`'s normal (non-dev, non-build) dependency tree holds
/// with the extra `features` arguments, one name per line. Offline when the
/// lock file and the downloaded crates suffice, else as cargo likes.
fn normal_tree(features: &[&str]) -> Vec<String> {
    let mut args = vec!["tree", "-p", "trueup", "-e", "normal", "--prefix", "none"];
    args.extend_from_slice(features);
    let offline = cargo(&[args.as_slice(), &["--offline"]].concat());
    let output = if offline.status.success() {
        offline
    } else {
        cargo(&args)
    };
    assert!(
        output.status.success(),
        "cargo {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The lines of `tree` naming one of [`TEST_INFRASTRUCTURE`].
fn test_infrastructure(tree: &[String]) -> Vec<&str> {
    tree.iter()
        .map(String::as_str)
        .filter(|line| {
            TEST_INFRASTRUCTURE
                .iter()
                .any(|name| line.starts_with(name))
        })
        .collect()
}

#[test]
fn the_product_build_links_no_emulators_and_no_conformance_kit() {
    let product = normal_tree(&["--no-default-features"]);
    assert!(
        product.iter().any(|line| line.starts_with("trueup ")),
        "the tree does not list trueup itself: {product:?}"
    );
    assert_eq!(
        test_infrastructure(&product),
        Vec::<&str>::new(),
        "`cargo tree -p trueup --no-default-features -e normal` must not list the emulators or the conformance kit"
    );
}

#[test]
fn the_default_build_links_the_emulators_and_the_conformance_kit() {
    let default = normal_tree(&[]);
    let found = test_infrastructure(&default);
    for name in TEST_INFRASTRUCTURE {
        assert!(
            found.iter().any(|line| line.starts_with(name)),
            "the default build (feature `demo`) lacks {name}: {found:?}"
        );
    }
}
