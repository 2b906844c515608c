//! Escaping user-supplied text (labels, model, dataset and subgroup names,
//! reasons) for Markdown output: the one function every Markdown writer of
//! the workspace (`report.md`, `evaluation.md`) passes such strings through.

/// Where an escaped string goes in a Markdown document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MdContext {
    /// A table cell: a `|` would end the cell, so it is escaped as well.
    TableCell,
    /// Running text (a paragraph, heading or list item).
    Text,
}

/// `s` made safe for Markdown in `ctx`: `&`, `<` and `>` become entities,
/// so a renderer cannot read the text as raw HTML (Markdown passes inline
/// HTML through); newlines and carriage returns become spaces, because they
/// would end a table row, a heading or a list item; and in a table cell `|`
/// becomes `\|`, which would otherwise start a new cell. Any other text
/// comes back unchanged.
pub fn md_escape(s: &str, ctx: MdContext) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' | '\r' => out.push(' '),
            '|' if ctx == MdContext::TableCell => out.push_str("\\|"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html_pipes_and_newlines() {
        let raw = "<script>alert(1)</script> a|b\r\nc & d";
        assert_eq!(
            md_escape(raw, MdContext::TableCell),
            "&lt;script&gt;alert(1)&lt;/script&gt; a\\|b  c &amp; d"
        );
        assert_eq!(
            md_escape(raw, MdContext::Text),
            "&lt;script&gt;alert(1)&lt;/script&gt; a|b  c &amp; d"
        );
        assert_eq!(
            md_escape("Pleural Effusion (n=3)", MdContext::TableCell),
            "Pleural Effusion (n=3)"
        );
    }
}
