//! "Did you mean …?": the closest known name to a misspelled one, for every error or warning
//! about an unknown name (attribute keys, faults, fault options, operations, `KELPIE_*`
//! variables).

/// The name nearest to `written`, if one is close enough to be a likely typo: the smallest
/// case-insensitive edit distance, if at most a third of `written`'s length (at least 1), else the
/// one name that contains `written` (4 characters or more), else `None`.
///
/// ```
/// use kelpie_spec::closest;
///
/// let names = ["seeds", "faults", "nodes"];
/// assert_eq!(closest("seed", &names), Some("seeds"));
/// assert_eq!(closest("FAULTS", &names), Some("faults"));
/// assert_eq!(closest("verbose", &names), None);
/// assert_eq!(closest("Partition", &["NetworkPartition", "NodeCrash"]), Some("NetworkPartition"));
/// ```
pub fn closest<'a>(written: &str, names: &[&'a str]) -> Option<&'a str> {
    let lower = written.to_lowercase();
    let best = names
        .iter()
        .map(|name| (levenshtein(&lower, &name.to_lowercase()), *name))
        .min_by_key(|(distance, _)| *distance)?;
    let limit = (written.chars().count() / 3).max(1);
    if best.0 <= limit {
        return Some(best.1);
    }
    // "Partition" for "NetworkPartition": a unique name containing what was written.
    let mut containing = names
        .iter()
        .filter(|n| lower.len() >= 4 && n.to_lowercase().contains(&lower));
    match (containing.next(), containing.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// Levenshtein distance over characters.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_names() {
        let names = ["seeds", "faults", "nodes"];
        assert_eq!(closest("seed", &names), Some("seeds"));
        assert_eq!(closest("FAULTS", &names), Some("faults"));
        assert_eq!(closest("x", &names), None);
        assert_eq!(closest("anything", &[]), None);
    }

    #[test]
    fn containment_must_be_unique() {
        let names = ["KELPIE_SEED", "KELPIE_SEEDS", "KELPIE_LOG"];
        assert_eq!(closest("seed", &names), None);
        assert_eq!(closest("KELPIE_SEEED", &names), Some("KELPIE_SEED"));
        assert_eq!(closest("kelpie_seeds", &names), Some("KELPIE_SEEDS"));
    }

    #[test]
    fn levenshtein_basics() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("KELPIE_SEED", "KELPIE_SEED"), 0);
        assert_eq!(levenshtein("KELPIE_SEEED", "KELPIE_SEED"), 1);
        assert_eq!(levenshtein("KELPIE_SED", "KELPIE_SEED"), 1);
        assert_eq!(levenshtein("KELPIE_SEDE", "KELPIE_SEED"), 2);
        assert_eq!(levenshtein("αβ", "αγ"), 1);
    }
}
