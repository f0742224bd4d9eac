//! Suggestions for an operator's typo: the valid name closest to it, within two edits.

/// The field of `fields` closest to a typo, if it is within two edits.
pub(crate) fn closest(typo: &str, fields: &[&'static str]) -> Option<&'static str> {
    fields
        .iter()
        .map(|field| (edit_distance(typo, field), *field))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, field)| field)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("listen", "listen"), 0);
        assert_eq!(edit_distance("listne", "listen"), 2);
        assert_eq!(edit_distance("echoo", "echo"), 1);
        assert_eq!(edit_distance("", "data"), 4);
    }

    #[test]
    fn a_typo_within_two_edits_gets_its_field_and_others_none() {
        assert_eq!(closest("listne", &["listen", "data"]), Some("listen"));
        assert_eq!(closest("zzzzzz", &["listen", "data"]), None);
    }
}
