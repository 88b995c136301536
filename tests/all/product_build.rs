//! The product build: `trueup` without its default `demo` feature links no
//! test infrastructure (the bundled emulators, the conformance kit), while
//! the default build does (so this check can fail). That the product build
//! compiles, lint-clean, is checked by `.ci/run`'s lint step (`cargo clippy
//! -p trueup --no-default-features`), which reuses the workspace lint's
//! checked dependencies; here, on a fresh clone, it re-checked every one of
//! them beside the other tests (~7 minutes on CI's two cores).

use std::process::Output;

use crate::support::cargo;

/// Crates only the default (`demo`) build may link.
const TEST_INFRASTRUCTURE: [&str; 2] = ["trueup-emulators", "trueup-conformance"];

/// Runs cargo with `args` in the workspace root: offline when the lock file
/// and the downloaded crates suffice, else as cargo likes. Fails the test
/// when cargo fails, with its error output.
fn run_cargo(args: &[&str]) -> Output {
    let offline = cargo()
        .args(args)
        .arg("--offline")
        .output()
        .expect("run cargo");
    let output = if offline.status.success() {
        offline
    } else {
        cargo().args(args).output().expect("run cargo")
    };
    assert!(
        output.status.success(),
        "cargo {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The crates `trueup`'s normal (non-dev, non-build) dependency tree holds
/// with the extra `features` arguments, one crate per line.
fn normal_tree(features: &[&str]) -> Vec<String> {
    let mut args = vec!["tree", "-p", "trueup", "-e", "normal", "--prefix", "none"];
    args.extend_from_slice(features);
    let output = run_cargo(&args);
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
