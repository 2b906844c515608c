//! REFERS' caption text: the report's findings and impression, and the
//! left/right swap that pairs a horizontal flip with its caption
//! (docs/ssl-methods.md (REFERS; Pitfalls)).

/// The caption of a report: the FINDINGS text then the IMPRESSION text,
/// headers removed and whitespace collapsed. A report with neither header
/// is used whole (the section split is this project's reading of the paper,
/// which does not say which sections REFERS trains on).
pub fn caption(report: &str) -> String {
    let section = |name: &str, stops: &[&str]| -> Option<String> {
        let at = report.rfind(name)? + name.len();
        let rest = &report[at..];
        let end = stops
            .iter()
            .filter_map(|s| rest.find(s))
            .min()
            .unwrap_or(rest.len());
        Some(rest[..end].split_whitespace().collect::<Vec<_>>().join(" "))
    };
    let findings = section("FINDINGS:", &["IMPRESSION:"]);
    let impression = section("IMPRESSION:", &["FINDINGS:"]);
    match (findings, impression) {
        (None, None) => report.split_whitespace().collect::<Vec<_>>().join(" "),
        (f, i) => [f, i]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// `word` (ASCII letters) re-cased like `like`: all capitals, a capital
/// first letter, or lower case.
fn recase(word: &str, like: &str) -> String {
    let mut letters = like.chars();
    if like.len() > 1 && like.chars().all(|c| c.is_ascii_uppercase()) {
        word.to_ascii_uppercase()
    } else if letters.next().is_some_and(|c| c.is_ascii_uppercase()) {
        let mut w = word.to_owned();
        w[..1].make_ascii_uppercase();
        w
    } else {
        word.to_owned()
    }
}

/// `text` with the whole words "left" and "right" exchanged, case kept
/// ("Left" -> "Right", "RIGHT" -> "LEFT"). Words are maximal runs of
/// letters, so "left-sided" swaps and "leftover" or "bright" do not, and
/// one pass over the text swaps each word once (REFERS' substring replace
/// swaps inside words; docs/ssl-methods.md (Pitfalls)).
pub fn swap_left_right(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        match word.to_ascii_lowercase().as_str() {
            "left" => out.push_str(&recase("right", word)),
            "right" => out.push_str(&recase("left", word)),
            _ => out.push_str(word),
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_alphabetic() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_whole_words_both_ways_once() {
        assert_eq!(
            swap_left_right("Left effusion, right pneumothorax; RIGHT-sided line."),
            "Right effusion, left pneumothorax; LEFT-sided line."
        );
        assert_eq!(
            swap_left_right("leftover brightness, upright, lefts"),
            "leftover brightness, upright, lefts"
        );
        let text = "left and right; Right of left.";
        assert_eq!(swap_left_right(&swap_left_right(text)), text);
        assert_eq!(swap_left_right("left"), "right");
        assert_eq!(swap_left_right(""), "");
    }

    #[test]
    fn caption_joins_findings_and_impression() {
        assert_eq!(
            caption("FINDINGS:  Small left\n effusion. IMPRESSION: Effusion."),
            "Small left effusion. Effusion."
        );
        assert_eq!(caption("IMPRESSION: Clear."), "Clear.");
        assert_eq!(caption("Lungs  clear."), "Lungs clear.");
    }
}
