//! Matching vendor accounts to PSA companies.
//!
//! Methods, strongest first; the first one that decides wins:
//! 1. a manual mapping or an exclusion already on record;
//! 2. an exact id link stored on the company ([`Company::account_links`]);
//! 3. equal names after [`normalize_name`];
//! 4. a shared e-mail/web domain (free-mail domains never count);
//! 5. a fuzzy name score ([`name_similarity`]), applied only at or above
//!    the threshold.
//!
//! A score below the threshold is never applied: the account stays
//! unmapped and the candidates come back as [`Suggestion`]s with score and
//! reason. Two or more companies tied at the deciding method also leave the
//! account unmapped, with every tied company suggested.
//!
//! Suggestions are ranked by evidence, strongest first (see [`NameEvidence`]):
//! a candidate whose whole name is contained, word for word, in the
//! account's (or the account's in its) comes before one that only shares
//! some words, which comes before one that is merely spelled alike. The
//! bigram score alone ranks badly: "Coho Winery" scores 0.6957 against
//! "Contoso Winery" (one shared word, similar letters) but only 0.6897
//! against "Coho Winery Holdings" (every word shared). Companies tied on a
//! shared domain, or on an equal name, are ordered by how well their names
//! agree with the account's (and by a shared domain), never by PSA order.

use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::model::{
    AccountMapping, AccountMappingStatus, AccountRef, Company, CompanyId, CompanyStatus,
    MappingMethod, VendorAccount,
};

/// The fuzzy score at or above which a match is applied without a person
/// (0.90).
pub const FUZZY_APPLY_THRESHOLD: Decimal = Decimal::from_parts(90, 0, 0, false, 2);

/// The fuzzy score below which a company is not even suggested (0.50).
pub const MIN_SUGGESTION_SCORE: Decimal = Decimal::from_parts(50, 0, 0, false, 2);

/// The most suggestions returned for one account (ties at the top are all
/// returned even past this).
pub const MAX_SUGGESTIONS: usize = 3;

/// Decimal places of a similarity score.
pub const SCORE_DP: u32 = 4;

/// Trailing words that name a legal form, dropped before names are
/// compared (checked after lower-casing and removing punctuation).
pub const LEGAL_SUFFIXES: &[&str] = &[
    "inc",
    "incorporated",
    "llc",
    "pllc",
    "llp",
    "lp",
    "ltd",
    "limited",
    "co",
    "company",
    "corp",
    "corporation",
    "group",
    "pc",
    "plc",
    "gmbh",
    "ag",
    "sa",
    "sarl",
    "bv",
    "nv",
    "pty",
    "lc",
];

/// Domains shared by unrelated people; a match on one proves nothing.
pub const FREE_MAIL_DOMAINS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "live.com",
    "msn.com",
    "yahoo.com",
    "icloud.com",
    "me.com",
    "aol.com",
    "proton.me",
    "protonmail.com",
    "gmx.com",
    "gmx.net",
    "zoho.com",
];

/// Matching settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatchConfig {
    /// Fuzzy scores at or above this are applied.
    pub apply_threshold: Decimal,
    /// Fuzzy scores below this are not suggested.
    pub min_suggestion: Decimal,
}

impl Default for MatchConfig {
    fn default() -> Self {
        Self {
            apply_threshold: FUZZY_APPLY_THRESHOLD,
            min_suggestion: MIN_SUGGESTION_SCORE,
        }
    }
}

/// A company an account might belong to, not applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    /// The candidate company.
    pub company: CompanyId,
    /// Its name, for display.
    pub company_name: String,
    /// The method that found it.
    pub method: MappingMethod,
    /// Confidence in 0..=1 (1 for exact methods).
    pub score: Decimal,
    /// Why it is suggested and why it was not applied.
    pub reason: String,
}

/// The decision for one account, with the candidates not applied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatchOutcome {
    /// The mapping to use.
    pub mapping: AccountMapping,
    /// Candidates for a person to confirm (empty when decided outright).
    pub suggestions: Vec<Suggestion>,
}

/// Lower-cases, turns `&` into `and`, drops `.` and apostrophes, turns other
/// punctuation into spaces, and removes trailing legal-form words (see
/// [`LEGAL_SUFFIXES`]) and a trailing `and`, keeping at least one word.
/// Words are joined by single spaces.
pub fn normalize_name(name: &str) -> String {
    let mut cleaned = String::with_capacity(name.len() + 8);
    for ch in name.chars().flat_map(char::to_lowercase) {
        match ch {
            '&' | '+' => cleaned.push_str(" and "),
            '.' | '\'' | '\u{2019}' => {}
            c if c.is_alphanumeric() => cleaned.push(c),
            _ => cleaned.push(' '),
        }
    }
    let mut words: Vec<&str> = cleaned.split_whitespace().collect();
    while words.len() > 1 {
        match words.last() {
            Some(last) if *last == "and" || LEGAL_SUFFIXES.contains(last) => {
                words.pop();
            }
            _ => break,
        }
    }
    words.join(" ")
}

/// A name prepared for fuzzy comparison: normalized, its words sorted, and
/// its character bigrams sorted (a multiset).
#[derive(Debug, Clone, PartialEq, Eq)]
struct NameKey {
    normalized: String,
    /// The distinct words, sorted.
    words: Vec<String>,
    bigrams: Vec<(char, char)>,
}

/// What a candidate company's name has in common with an account's, in
/// ranking order: the derived `Ord` compares `contained` first, then
/// `shared_words`, then `score`, so whole-word agreement outranks letters
/// that merely look alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NameEvidence {
    /// Every word of the shorter name is a word of the longer one ("Coho
    /// Winery" in "Coho Winery Holdings").
    pub contained: bool,
    /// Distinct whole words both names have (after [`normalize_name`]).
    pub shared_words: usize,
    /// The bigram similarity ([`name_similarity`]).
    pub score: Decimal,
}

impl NameKey {
    fn new(name: &str) -> Self {
        let normalized = normalize_name(name);
        let mut words: Vec<&str> = normalized.split(' ').collect();
        words.sort_unstable();
        let sorted = words.join(" ");
        words.dedup();
        let chars: Vec<char> = sorted.chars().collect();
        let mut bigrams: Vec<(char, char)> = chars.windows(2).map(|w| (w[0], w[1])).collect();
        bigrams.sort_unstable();
        Self {
            words: words
                .into_iter()
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect(),
            normalized,
            bigrams,
        }
    }

    /// The evidence that `self` and `other` name the same company, with
    /// `score` already computed ([`NameKey::dice`]).
    fn evidence(&self, other: &Self, score: Decimal) -> NameEvidence {
        let shared_words = self
            .words
            .iter()
            .filter(|w| other.words.binary_search(w).is_ok())
            .count();
        let shorter = self.words.len().min(other.words.len());
        NameEvidence {
            contained: shared_words > 0 && shared_words == shorter,
            shared_words,
            score,
        }
    }

    /// Sørensen–Dice over bigram multisets: `2 |A ∩ B| / (|A| + |B|)`.
    fn dice(&self, other: &Self) -> Decimal {
        let total = self.bigrams.len() + other.bigrams.len();
        if total == 0 || self.bigrams.is_empty() || other.bigrams.is_empty() {
            // One-letter names have no bigrams: only equality counts.
            return if !self.normalized.is_empty() && self.normalized == other.normalized {
                Decimal::ONE
            } else {
                Decimal::ZERO
            };
        }
        let (mut i, mut j, mut shared) = (0, 0, 0usize);
        while i < self.bigrams.len() && j < other.bigrams.len() {
            match self.bigrams[i].cmp(&other.bigrams[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    shared += 1;
                    i += 1;
                    j += 1;
                }
            }
        }
        (Decimal::from(2 * shared) / Decimal::from(total)).round_dp(SCORE_DP)
    }

    /// The best score this name could reach against one with `other_len`
    /// bigrams (all of the smaller set shared).
    fn upper_bound(&self, other_len: usize) -> Decimal {
        let total = self.bigrams.len() + other_len;
        if total == 0 {
            return Decimal::ONE;
        }
        Decimal::from(2 * self.bigrams.len().min(other_len)) / Decimal::from(total)
    }
}

/// How alike two company names are, in 0..=1 (4 decimals): the Sørensen–Dice
/// coefficient of the character bigrams of each name after
/// [`normalize_name`] and sorting its words, so word order does not matter.
pub fn name_similarity(a: &str, b: &str) -> Decimal {
    NameKey::new(a).dice(&NameKey::new(b))
}

/// The ranking evidence ([`NameEvidence`]) that `a` and `b` name the same
/// company.
pub fn name_evidence(a: &str, b: &str) -> NameEvidence {
    let (a, b) = (NameKey::new(a), NameKey::new(b));
    let score = a.dice(&b);
    a.evidence(&b, score)
}

/// A domain in the form domains are compared in: lower-case, trimmed, with
/// any `@`-prefix or `www.` removed; `None` for free-mail domains.
pub fn normalize_domain(domain: &str) -> Option<String> {
    let lower = domain.trim().to_lowercase();
    let bare = lower.rsplit('@').next().unwrap_or(&lower);
    let bare = bare
        .strip_prefix("www.")
        .unwrap_or(bare)
        .trim_end_matches('.');
    (!bare.is_empty() && !FREE_MAIL_DOMAINS.contains(&bare)).then(|| bare.to_owned())
}

/// The PSA companies, indexed for matching many accounts.
#[derive(Debug)]
pub struct CompanyIndex<'a> {
    companies: &'a [Company],
    by_link: HashMap<&'a AccountRef, Vec<usize>>,
    by_name: HashMap<String, Vec<usize>>,
    by_domain: HashMap<String, Vec<usize>>,
    keys: Vec<NameKey>,
    config: MatchConfig,
}

impl<'a> CompanyIndex<'a> {
    /// Indexes `companies`.
    pub fn new(companies: &'a [Company], config: MatchConfig) -> Self {
        let mut by_link: HashMap<&AccountRef, Vec<usize>> = HashMap::new();
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_domain: HashMap<String, Vec<usize>> = HashMap::new();
        let mut keys = Vec::with_capacity(companies.len());
        for (i, company) in companies.iter().enumerate() {
            for link in &company.account_links {
                push_unique(by_link.entry(link).or_default(), i);
            }
            let key = NameKey::new(&company.name);
            if !key.normalized.is_empty() {
                push_unique(by_name.entry(key.normalized.clone()).or_default(), i);
            }
            for domain in company.domains.iter().filter_map(|d| normalize_domain(d)) {
                push_unique(by_domain.entry(domain).or_default(), i);
            }
            keys.push(key);
        }
        Self {
            companies,
            by_link,
            by_name,
            by_domain,
            keys,
            config,
        }
    }

    /// Decides `account`. `existing` is the mapping on record for it, if
    /// any: a manual mapping or any exclusion wins outright; anything else
    /// is recomputed from current data.
    pub fn match_account(
        &self,
        account: &VendorAccount,
        existing: Option<&AccountMapping>,
    ) -> MatchOutcome {
        let decided = |status, method, reason: String| MatchOutcome {
            mapping: AccountMapping {
                vendor: account.vendor.clone(),
                account: account.id.clone(),
                status,
                method,
                reason,
            },
            suggestions: Vec::new(),
        };
        if let Some(existing) = existing {
            let manual = matches!(existing.method, MappingMethod::Manual { .. });
            if existing.status == AccountMappingStatus::Excluded || manual {
                return decided(
                    existing.status.clone(),
                    existing.method.clone(),
                    existing.reason.clone(),
                );
            }
        }

        let link = AccountRef {
            vendor: account.vendor.clone(),
            account: account.id.clone(),
        };
        let account_domains: Vec<String> = account
            .domains
            .iter()
            .filter_map(|d| normalize_domain(d))
            .collect();
        if let Some(hits) = self.by_link.get(&link) {
            let hits = self.domain_sharers_first(hits, &account_domains);
            return self.decide_exact(account, &hits, MappingMethod::ExactIdLink, |c| {
                format!(
                    "{} links to {} account {} in the PSA",
                    c.name, account.vendor, account.id
                )
            });
        }
        let key = NameKey::new(&account.name);
        if let Some(hits) = self.by_name.get(&key.normalized) {
            let hits = self.domain_sharers_first(hits, &account_domains);
            return self.decide_exact(account, &hits, MappingMethod::ExactName, |c| {
                format!(
                    "name \"{}\" equals \"{}\" once normalized (\"{}\")",
                    account.name, c.name, key.normalized
                )
            });
        }
        let mut domain_hits: Vec<(usize, String)> = Vec::new();
        for domain in &account_domains {
            for &i in self
                .by_domain
                .get(domain)
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                if !domain_hits.iter().any(|(j, _)| *j == i) {
                    domain_hits.push((i, domain.clone()));
                }
            }
        }
        if !domain_hits.is_empty() {
            // Several companies on one domain (a parent's, or the MSP's own
            // website on every company): the one whose name agrees best
            // with the account's comes first.
            let mut ranked: Vec<(NameEvidence, usize)> = domain_hits
                .iter()
                .map(|&(i, _)| {
                    let company = &self.keys[i];
                    (key.evidence(company, key.dice(company)), i)
                })
                .collect();
            ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
            let hits: Vec<usize> = ranked.iter().map(|(_, i)| *i).collect();
            let domain_of = |i: usize| {
                domain_hits
                    .iter()
                    .find(|(j, _)| *j == i)
                    .map(|(_, d)| d.clone())
                    .unwrap_or_default()
            };
            if let [only] = hits.as_slice() {
                let domain = domain_of(*only);
                let company = &self.companies[*only];
                let reason = format!(
                    "domain {domain} is shared with {}{}",
                    company.name,
                    inactive_note(company)
                );
                return self.mapped(account, *only, MappingMethod::Domain { domain }, reason);
            }
            let suggestions = hits
                .iter()
                .map(|&i| {
                    let domain = domain_of(i);
                    let company = &self.companies[i];
                    Suggestion {
                        company: company.id.clone(),
                        company_name: company.name.clone(),
                        reason: format!(
                            "domain {domain} is shared with {}, and with other companies",
                            company.name
                        ),
                        method: MappingMethod::Domain { domain },
                        score: Decimal::ONE,
                    }
                })
                .collect();
            return self.ambiguous(account, suggestions, "several companies share its domain");
        }
        self.decide_fuzzy(account, &key)
    }

    /// `hits` with the companies that share a domain with the account
    /// first (each group in company order): the better candidates when
    /// several companies match equally by name or link.
    fn domain_sharers_first(&self, hits: &[usize], account_domains: &[String]) -> Vec<usize> {
        let shares = |i: usize| {
            account_domains
                .iter()
                .any(|d| self.by_domain.get(d).is_some_and(|list| list.contains(&i)))
        };
        let (mut first, rest): (Vec<usize>, Vec<usize>) = hits.iter().partition(|&&i| shares(i));
        first.extend(rest);
        first
    }

    fn decide_exact(
        &self,
        account: &VendorAccount,
        hits: &[usize],
        method: MappingMethod,
        reason: impl Fn(&Company) -> String,
    ) -> MatchOutcome {
        if let [only] = hits {
            let company = &self.companies[*only];
            let why = format!("{}{}", reason(company), inactive_note(company));
            return self.mapped(account, *only, method, why);
        }
        let suggestions = hits
            .iter()
            .map(|&i| {
                let company = &self.companies[i];
                Suggestion {
                    company: company.id.clone(),
                    company_name: company.name.clone(),
                    method: method.clone(),
                    score: Decimal::ONE,
                    reason: format!("{}, but so does another company", reason(company)),
                }
            })
            .collect();
        self.ambiguous(account, suggestions, "several companies match it equally")
    }

    fn decide_fuzzy(&self, account: &VendorAccount, key: &NameKey) -> MatchOutcome {
        let mut ranked: Vec<(NameEvidence, usize)> = Vec::new();
        for (i, company_key) in self.keys.iter().enumerate() {
            if key.upper_bound(company_key.bigrams.len()) < self.config.min_suggestion {
                continue;
            }
            let score = key.dice(company_key);
            if score >= self.config.min_suggestion {
                ranked.push((key.evidence(company_key, score), i));
            }
        }
        // Strongest evidence first (whole words before look-alike letters,
        // see [`NameEvidence`]); equal evidence in company order so the
        // output is stable.
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let Some(&(top, top_i)) = ranked.first() else {
            return self.unmapped(
                account,
                MappingMethod::NoMatch,
                "no company name, domain or link matches".into(),
                vec![],
            );
        };
        let tied = ranked.iter().take_while(|(e, _)| *e == top).count();
        let best = top.score;
        let threshold = self.config.apply_threshold;
        // Applied only when the best-ranked candidate is alone and scores
        // at or above the threshold: when word evidence and letters point
        // at different companies, a person decides.
        if best >= threshold && tied == 1 {
            let company = &self.companies[top_i];
            let reason = format!(
                "name \"{}\" is similar to \"{}\" (score {best}, at or above the {threshold} threshold){}",
                account.name,
                company.name,
                inactive_note(company)
            );
            return self.mapped(
                account,
                top_i,
                MappingMethod::FuzzyName { score: best },
                reason,
            );
        }
        let keep = tied.max(MAX_SUGGESTIONS).min(ranked.len());
        let suggestions = ranked[..keep]
            .iter()
            .map(|&(evidence, i)| {
                let company = &self.companies[i];
                let score = evidence.score;
                let why_not = if evidence == top && tied > 1 {
                    "tied with another company; pick one".to_owned()
                } else if score < threshold {
                    format!("below the {threshold} threshold; confirm to map")
                } else {
                    "but another company's name shares more words; confirm to map".to_owned()
                };
                let words = match (evidence.contained, evidence.shared_words) {
                    (true, _) => ", every word of the shorter name in the other".to_owned(),
                    (false, 0) => String::new(),
                    (false, n) => format!(", {n} word(s) in common"),
                };
                Suggestion {
                    company: company.id.clone(),
                    company_name: company.name.clone(),
                    method: MappingMethod::FuzzyName { score },
                    score,
                    reason: format!(
                        "name \"{}\" is similar to \"{}\" (score {score}{words}), {why_not}",
                        account.name, company.name
                    ),
                }
            })
            .collect();
        if tied > 1 {
            self.ambiguous(
                account,
                suggestions,
                "several companies have the same best name score",
            )
        } else {
            self.unmapped(
                account,
                MappingMethod::NoMatch,
                format!(
                    "the closest name (\"{}\", score {best}) is below the {threshold} threshold; see suggestions",
                    self.companies[top_i].name
                ),
                suggestions,
            )
        }
    }

    fn mapped(
        &self,
        account: &VendorAccount,
        company: usize,
        method: MappingMethod,
        reason: String,
    ) -> MatchOutcome {
        MatchOutcome {
            mapping: AccountMapping {
                vendor: account.vendor.clone(),
                account: account.id.clone(),
                status: AccountMappingStatus::Mapped(self.companies[company].id.clone()),
                method,
                reason,
            },
            suggestions: Vec::new(),
        }
    }

    fn unmapped(
        &self,
        account: &VendorAccount,
        method: MappingMethod,
        reason: String,
        suggestions: Vec<Suggestion>,
    ) -> MatchOutcome {
        MatchOutcome {
            mapping: AccountMapping {
                vendor: account.vendor.clone(),
                account: account.id.clone(),
                status: AccountMappingStatus::Unmapped,
                method,
                reason,
            },
            suggestions,
        }
    }

    fn ambiguous(
        &self,
        account: &VendorAccount,
        suggestions: Vec<Suggestion>,
        why: &str,
    ) -> MatchOutcome {
        let names: Vec<&str> = suggestions
            .iter()
            .map(|s| s.company_name.as_str())
            .collect();
        let reason = format!(
            "ambiguous: {why} ({}); left unmapped for a person to choose",
            names.join(", ")
        );
        self.unmapped(account, MappingMethod::NoMatch, reason, suggestions)
    }
}

fn push_unique(list: &mut Vec<usize>, i: usize) {
    if !list.contains(&i) {
        list.push(i);
    }
}

fn inactive_note(company: &Company) -> &'static str {
    match company.status {
        CompanyStatus::Active => "",
        CompanyStatus::Inactive => " (note: the company is inactive in the PSA)",
    }
}

/// Decides every account in `accounts` (see [`CompanyIndex::match_account`]),
/// in input order. `existing` holds the mappings on record; manual ones and
/// exclusions are kept as they are.
pub fn match_accounts(
    companies: &[Company],
    accounts: &[VendorAccount],
    existing: &[AccountMapping],
    config: MatchConfig,
) -> Vec<MatchOutcome> {
    let index = CompanyIndex::new(companies, config);
    let on_record: HashMap<(&str, &str), &AccountMapping> = existing
        .iter()
        .map(|m| ((m.vendor.as_str(), m.account.as_str()), m))
        .collect();
    accounts
        .iter()
        .map(|a| {
            index.match_account(
                a,
                on_record.get(&(a.vendor.as_str(), a.id.as_str())).copied(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn company(id: &str, name: &str, domains: &[&str]) -> Company {
        Company {
            id: id.into(),
            name: name.into(),
            identifier: None,
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            status: CompanyStatus::Active,
            account_links: vec![],
        }
    }

    fn account(id: &str, name: &str, domains: &[&str]) -> VendorAccount {
        VendorAccount {
            vendor: "microsoft-365".into(),
            id: id.into(),
            name: name.into(),
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    #[test]
    fn normalization_drops_case_punctuation_and_legal_forms() {
        let table = [
            ("Contoso, Inc.", "contoso"),
            ("CONTOSO LLC", "contoso"),
            ("Smith & Sons Ltd", "smith and sons"),
            ("Smith and Sons, Limited", "smith and sons"),
            ("Fabrikam Group GmbH", "fabrikam"),
            ("Jones & Co.", "jones"),
            ("O'Brien Dental P.C.", "obrien dental"),
            ("Acme Corp.", "acme"),
            // A name that is only a legal word keeps it.
            ("Group", "group"),
            ("  Alpha---Beta  ", "alpha beta"),
        ];
        for (name, expected) in table {
            assert_eq!(normalize_name(name), expected, "{name}");
        }
    }

    #[test]
    fn dice_similarity_is_hand_checkable() {
        // "night" vs "nacht": bigrams ni,ig,gh,ht vs na,ac,ch,ht → 1 shared;
        // 2 × 1 / (4 + 4) = 0.25.
        assert_eq!(name_similarity("night", "nacht"), dec!(0.25));
        // Word order does not matter after sorting words.
        assert_eq!(
            name_similarity("Dental Smith", "Smith Dental LLC"),
            Decimal::ONE
        );
        // "contoso" vs "contosso": bigrams co,on,nt,to,os,so (6) vs
        // co,on,nt,to,os,ss,so (7): 6 shared → 12/13 = 0.9231.
        assert_eq!(name_similarity("Contoso", "Contosso"), dec!(0.9231));
        assert_eq!(name_similarity("a", "a"), Decimal::ONE);
        assert_eq!(name_similarity("a", "b"), Decimal::ZERO);
    }

    #[test]
    fn each_method_decides_in_order() {
        let mut linked = company("1", "Northwind Traders", &["northwind.example"]);
        linked.account_links.push(AccountRef {
            vendor: "microsoft-365".into(),
            account: "tenant-9".into(),
        });
        let companies = [
            linked,
            company("2", "Contoso Ltd", &["contoso.example", "gmail.com"]),
            company("3", "Fabrikam", &["fabrikam.example"]),
        ];
        let index = CompanyIndex::new(&companies, MatchConfig::default());
        // (account, expected company, method check)
        type Check = fn(&MappingMethod) -> bool;
        let table: [(VendorAccount, &str, Check); 5] = [
            (account("tenant-9", "Something Else", &[]), "1", |m| {
                *m == MappingMethod::ExactIdLink
            }),
            (account("t2", "CONTOSO, LLC", &[]), "2", |m| {
                *m == MappingMethod::ExactName
            }),
            (
                account("t3", "FBK Holdings", &["WWW.Fabrikam.example"]),
                "3",
                |m| matches!(m, MappingMethod::Domain { domain } if domain == "fabrikam.example"),
            ),
            // 12/13 = 0.9231 ≥ 0.90 → applied.
            (
                account("t4", "Contosso", &[]),
                "2",
                |m| matches!(m, MappingMethod::FuzzyName { score } if *score == dec!(0.9231)),
            ),
            // The id link beats a conflicting name.
            (account("tenant-9", "Fabrikam", &[]), "1", |m| {
                *m == MappingMethod::ExactIdLink
            }),
        ];
        for (account, expected, method) in table {
            let outcome = index.match_account(&account, None);
            assert_eq!(
                outcome.mapping.status,
                AccountMappingStatus::Mapped(expected.into()),
                "{}",
                account.name
            );
            assert!(
                method(&outcome.mapping.method),
                "{:?}",
                outcome.mapping.method
            );
            assert!(!outcome.mapping.reason.is_empty());
            assert!(outcome.suggestions.is_empty());
        }
    }

    /// Ranking: an exact or domain match outranks a fuzzy one, and whole
    /// words outrank look-alike letters. Each case: the account, the
    /// companies (in PSA order), and the company expected first — mapped
    /// outright (`true`) or first among the suggestions (`false`).
    #[test]
    fn exact_and_domain_evidence_outrank_fuzzy_names() {
        struct Case {
            what: &'static str,
            account: VendorAccount,
            companies: Vec<Company>,
            first: &'static str,
            mapped: bool,
        }
        let coho = |domains: &[&str]| company("coho", "Coho Winery", domains);
        let contoso = |domains: &[&str]| company("contoso", "Contoso Winery", domains);
        let cases = [
            Case {
                what: "exact name",
                account: account("a", "Coho Winery", &[]),
                companies: vec![contoso(&[]), coho(&[])],
                first: "coho",
                mapped: true,
            },
            Case {
                what: "name with legal suffix and punctuation",
                account: account("a", "COHO WINERY, Inc.", &[]),
                companies: vec![contoso(&[]), coho(&[])],
                first: "coho",
                mapped: true,
            },
            Case {
                what: "domain match beats a closer-looking name",
                account: account("a", "Contoso Winery Holdings", &["cohowinery.com"]),
                companies: vec![contoso(&[]), coho(&["www.cohowinery.com"])],
                first: "coho",
                mapped: true,
            },
            Case {
                what: "fuzzy: a typo at or above the threshold",
                // "coho winry" vs "coho winery": 16/19 = 0.8421 < 0.90, so
                // only suggested, but first (Contoso Winery: 0.5455).
                account: account("a", "Coho Winry", &[]),
                companies: vec![contoso(&[]), coho(&[])],
                first: "coho",
                mapped: false,
            },
            Case {
                // The reported case: "Contoso Winery" scores 0.6957, "Coho
                // Winery Holdings" 0.6897, yet only the latter holds every
                // word of "Coho Winery".
                what: "Coho/Contoso: every word shared outranks similar letters",
                account: account("a", "Coho Winery", &[]),
                companies: vec![
                    contoso(&[]),
                    company("holdings", "Coho Winery Holdings", &[]),
                ],
                first: "holdings",
                mapped: false,
            },
            Case {
                // Both companies carry the MSP's own website: the domain
                // ties, the name decides the order (not the PSA's order).
                what: "Coho/Contoso: a shared domain is ordered by the name",
                account: account("a", "Coho Winery", &["msp.example"]),
                companies: vec![
                    company("contoso", "Contoso", &["msp.example"]),
                    company("vineyards", "Coho Winery Vineyards", &["msp.example"]),
                ],
                first: "vineyards",
                mapped: false,
            },
            Case {
                what: "equal names: the one sharing the account's domain first",
                account: account("a", "Coho Winery", &["cohowinery.com"]),
                companies: vec![
                    company("old", "Coho Winery", &[]),
                    company("new", "Coho Winery LLC", &["cohowinery.com"]),
                ],
                first: "new",
                mapped: false,
            },
        ];
        for case in cases {
            let index = CompanyIndex::new(&case.companies, MatchConfig::default());
            let outcome = index.match_account(&case.account, None);
            if case.mapped {
                assert_eq!(
                    outcome.mapping.status,
                    AccountMappingStatus::Mapped(case.first.into()),
                    "{}: {}",
                    case.what,
                    outcome.mapping.reason
                );
            } else {
                assert_eq!(
                    outcome.mapping.status,
                    AccountMappingStatus::Unmapped,
                    "{}",
                    case.what
                );
                let order: Vec<&str> = outcome
                    .suggestions
                    .iter()
                    .map(|s| s.company.as_str())
                    .collect();
                assert_eq!(order.first(), Some(&case.first), "{}: {order:?}", case.what);
                assert!(order.len() >= 2, "{}: both suggested: {order:?}", case.what);
            }
        }
        // The letters alone would have ranked Contoso first.
        assert!(
            name_similarity("Coho Winery", "Contoso Winery")
                > name_similarity("Coho Winery", "Coho Winery Holdings")
        );
        assert!(
            name_evidence("Coho Winery", "Coho Winery Holdings")
                > name_evidence("Coho Winery", "Contoso Winery")
        );
    }

    #[test]
    fn free_mail_domains_never_match() {
        let companies = [company("2", "Contoso Ltd", &["gmail.com"])];
        let outcome = CompanyIndex::new(&companies, MatchConfig::default())
            .match_account(&account("x", "Zeta", &["gmail.com"]), None);
        assert_eq!(outcome.mapping.status, AccountMappingStatus::Unmapped);
    }

    #[test]
    fn below_threshold_is_only_suggested() {
        let companies = [
            company("1", "Contoso Pharmacy", &[]),
            company("2", "Zeta Labs", &[]),
        ];
        let index = CompanyIndex::new(&companies, MatchConfig::default());
        // "contoso pharmacy" (15 bigrams) vs "contoso pharma" (13): 13 shared
        // → 26/28 = 0.9286, applied. "contoso pharm" (12 bigrams), 12 shared
        // → 24/27 = 0.8889 < 0.90 → suggested only.
        let applied = index.match_account(&account("a", "Contoso Pharma", &[]), None);
        assert_eq!(
            applied.mapping.status,
            AccountMappingStatus::Mapped("1".into())
        );
        let suggested = index.match_account(&account("b", "Contoso Pharm", &[]), None);
        assert_eq!(suggested.mapping.status, AccountMappingStatus::Unmapped);
        assert_eq!(suggested.mapping.method, MappingMethod::NoMatch);
        assert_eq!(suggested.suggestions.len(), 1);
        assert_eq!(suggested.suggestions[0].company, "1".into());
        assert_eq!(suggested.suggestions[0].score, dec!(0.8889));
        assert!(
            suggested.suggestions[0]
                .reason
                .contains("below the 0.90 threshold")
        );
        // A stricter threshold is configurable.
        let strict = CompanyIndex::new(
            &companies,
            MatchConfig {
                apply_threshold: dec!(0.95),
                ..MatchConfig::default()
            },
        );
        assert_eq!(
            strict
                .match_account(&account("a", "Contoso Pharma", &[]), None)
                .mapping
                .status,
            AccountMappingStatus::Unmapped
        );
    }

    #[test]
    fn ties_stay_unmapped_with_every_candidate() {
        let companies = [
            company("1", "Contoso Ltd", &["shared.example"]),
            company("2", "Contoso LLC", &["shared.example"]),
            company("3", "Alpha Beta", &[]),
            company("4", "Beta Alpha", &[]),
        ];
        let index = CompanyIndex::new(&companies, MatchConfig::default());
        for account in [
            account("a", "Contoso", &[]),
            account("b", "Unrelated", &["shared.example"]),
            // "alpha betas" vs "alpha beta" (sorted) and "beta alpha" →
            // "alpha beta": both the same sorted key, so the same score.
            account("c", "Alpha Betas", &[]),
        ] {
            let outcome = index.match_account(&account, None);
            assert_eq!(
                outcome.mapping.status,
                AccountMappingStatus::Unmapped,
                "{}",
                account.name
            );
            assert!(
                outcome.mapping.reason.starts_with("ambiguous"),
                "{}",
                outcome.mapping.reason
            );
            assert!(outcome.suggestions.len() >= 2);
            let top = outcome.suggestions[0].score;
            assert_eq!(outcome.suggestions[1].score, top);
        }
    }

    #[test]
    fn manual_mappings_and_exclusions_win() {
        let companies = [company("1", "Contoso", &[]), company("2", "Fabrikam", &[])];
        let accounts = [
            account("a", "Contoso", &[]),
            account("b", "Contoso", &[]),
            account("c", "Contoso", &[]),
        ];
        let record = |acc: &str, status, method| AccountMapping {
            vendor: "microsoft-365".into(),
            account: acc.into(),
            status,
            method,
            reason: "on record".into(),
        };
        let existing = [
            record(
                "a",
                AccountMappingStatus::Mapped("2".into()),
                MappingMethod::Manual { by: "pat".into() },
            ),
            record(
                "b",
                AccountMappingStatus::Excluded,
                MappingMethod::Manual { by: "pat".into() },
            ),
            // An automatic decision on record is recomputed.
            record(
                "c",
                AccountMappingStatus::Mapped("2".into()),
                MappingMethod::ExactName,
            ),
        ];
        let outcomes = match_accounts(&companies, &accounts, &existing, MatchConfig::default());
        let statuses: Vec<_> = outcomes.iter().map(|o| o.mapping.status.clone()).collect();
        assert_eq!(
            statuses,
            [
                AccountMappingStatus::Mapped("2".into()),
                AccountMappingStatus::Excluded,
                AccountMappingStatus::Mapped("1".into())
            ]
        );
    }
}
