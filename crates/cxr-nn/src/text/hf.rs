//! Hugging Face `tokenizer.json` files as transformers' tokenizers use them:
//! the file's own normalizer, pre-tokenizer, model and special-token
//! template, truncated and padded to a fixed length the way
//! `tokenizer(texts, padding="max_length", max_length=ctx, truncation=True)`
//! does (SigLIP's text tower needs exactly that: it was trained on texts
//! padded to 64 tokens and reads the last position).
//!
//! transformers 5.25's `SiglipTokenizer` is SentencePiece-only (it reads
//! `spiece.model` and cannot write a `tokenizer.json`), and it cleans texts
//! before SentencePiece: lower-cased, ASCII punctuation removed, whitespace
//! runs made one space, stripped. [`SIGLIP_TOKENIZER_JSON_COMMAND`] writes a
//! `tokenizer.json` that does the same inside its normalizer, so this module
//! needs nothing SigLIP-specific. Its ids are the slow tokenizer's on texts
//! without special-token strings (`</s>`, `<unk>`, `<pad>` written out,
//! which the two split off differently), given a SentencePiece normaliser
//! that reads `▁` as a space, as `nmt_nfkc` (SentencePiece's default) does:
//! otherwise the slow tokenizer turns leading whitespace into an extra `▁`.

use std::path::{Path, PathBuf};

use serde_json::Value;
use tokenizers::{
    Encoding, PaddingDirection, PaddingParams, PostProcessor, Token, Tokenizer, TruncationDirection,
};

use super::{TextTokenizer, TokenizerKind};
use crate::error::NnError;

/// Writes `DIR/tokenizer.json` for a SigLIP model directory `DIR` that has
/// only SentencePiece's `spiece.model` (with transformers, `tokenizers` and
/// `sentencepiece` installed): transformers' generic SentencePiece
/// conversion, with `SiglipTokenizer`'s text cleaning (`canonicalize_text`:
/// lower-casing when `do_lower_case`, `string.punctuation` removed, Python's
/// whitespace runs made one space, stripped) put in front of its normalizer,
/// the end token appended, and the pad token recorded.
pub const SIGLIP_TOKENIZER_JSON_COMMAND: &str = r#"python -c 'import sys;from transformers import SiglipTokenizer as S;from transformers.convert_slow_tokenizer import SpmConverter as C;from tokenizers import Regex as R,normalizers as N,processors as P;d=sys.argv[1];s=S.from_pretrained(d);t=C(s).converted();t.normalizer=N.Sequence([N.Replace("\u2581"," ")]+[N.Lowercase()]*s.do_lower_case+[N.Replace(R(r"[!-/:-@\[-\x60{-~]"),""),N.Replace(R(r"[\s\x1c-\x1f]+")," "),N.Strip(),t.normalizer]);t.post_processor=P.TemplateProcessing(single="$A "+s.eos_token,special_tokens=[(s.eos_token,s.eos_token_id)]);t.enable_padding(pad_id=s.pad_token_id,pad_token=s.pad_token);t.save(d+"/tokenizer.json")' DIR"#;

/// How a `tokenizer.json` pads and truncates (from the file, or transformers'
/// `tokenizer_config.json` beside it).
#[derive(Debug, Clone)]
pub(super) struct HfLayout {
    pad_token: String,
    pad_left: bool,
    truncate_left: bool,
}

/// `path` quoted for a POSIX shell when it needs it.
fn shell_quoted(path: &Path) -> String {
    let s = path.display().to_string();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The refusal of a model directory with `spiece.model` but no
/// `tokenizer.json`, with the command that writes one.
fn spiece_only(dir: &Path) -> NnError {
    NnError::TokenizerFile {
        path: dir.to_owned(),
        problem: format!(
            "has a SentencePiece spiece.model but no tokenizer.json, which is what is read here \
             (transformers' SiglipTokenizer reads spiece.model only); write one beside it with: {}",
            SIGLIP_TOKENIZER_JSON_COMMAND.replace("DIR", &shell_quoted(dir))
        ),
    }
}

/// The `tokenizer.json` that `path` names: the file itself, or the one in
/// a model directory.
fn tokenizer_file(path: &Path) -> Result<PathBuf, NnError> {
    if path.is_dir() {
        let file = path.join("tokenizer.json");
        if file.is_file() {
            Ok(file)
        } else if path.join("spiece.model").is_file() {
            Err(spiece_only(path))
        } else {
            Err(NnError::TokenizerFile {
                path: path.to_owned(),
                problem: "has no tokenizer.json".into(),
            })
        }
    } else if path.extension().is_some_and(|e| e == "model") {
        // A SentencePiece model named directly: the tokenizer.json beside
        // it, if there is one.
        let dir = path.parent().unwrap_or(Path::new("."));
        let file = dir.join("tokenizer.json");
        if file.is_file() {
            Ok(file)
        } else {
            Err(spiece_only(dir))
        }
    } else {
        Ok(path.to_owned())
    }
}

/// A JSON file beside the tokenizer (`tokenizer_config.json`,
/// `special_tokens_map.json`), `Null` when absent.
fn sidecar(dir: &Path, name: &str) -> Result<Value, NnError> {
    let path = dir.join(name);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(Value::Null);
    };
    serde_json::from_str(&text).map_err(|e| NnError::TokenizerFile {
        path,
        problem: format!("is not JSON: {e}"),
    })
}

/// A special token as transformers stores it: a string, or an object with
/// its `content`.
fn token_text(v: &Value) -> Option<&str> {
    v.as_str()
        .or_else(|| v.get("content").and_then(Value::as_str))
}

/// Whether a transformers `*_side` setting says left.
fn left(config: &Value, key: &str) -> bool {
    config.get(key).and_then(Value::as_str) == Some("left")
}

impl TextTokenizer {
    /// A Hugging Face tokenizer from its `tokenizer.json` (`path` is the file
    /// or the directory holding it), encoding as transformers does:
    /// [`encode_batch`](Self::encode_batch) gives what `tokenizer(texts,
    /// padding="max_length", max_length=ctx, truncation=True)` gives, with
    /// the file's own special tokens (SigLIP's: the text then `</s>`), the
    /// text cut so that they fit, and its pad token after.
    ///
    /// The pad token is the file's `padding.pad_token`, else the `pad_token`
    /// of `tokenizer_config.json` or `special_tokens_map.json` beside it; the
    /// padding and truncation sides come from the file's `padding` and
    /// `truncation` sections, else `padding_side` and `truncation_side` of
    /// `tokenizer_config.json`, else the right. `start_id` and `end_id` are
    /// the special ids the template puts before and after a text; with none
    /// before (SigLIP), `start_id` is `end_id`; with none after, `end_id` is
    /// the pad id.
    ///
    /// # Errors
    /// A directory without `tokenizer.json` (one with only SentencePiece's
    /// `spiece.model` is refused with [`SIGLIP_TOKENIZER_JSON_COMMAND`], the
    /// directory filled in), a file the `tokenizers` crate rejects, or no pad
    /// token found.
    pub fn hf_json(path: &Path) -> Result<Self, NnError> {
        let file = tokenizer_file(path)?;
        let mut tokenizer =
            Tokenizer::from_file(&file).map_err(|source| NnError::LoadTokenizer {
                path: file.clone(),
                source,
            })?;
        let dir = file.parent().unwrap_or(Path::new("."));
        let config = sidecar(dir, "tokenizer_config.json")?;
        let pad = match tokenizer.get_padding() {
            Some(p) => Some((
                p.pad_token.clone(),
                matches!(p.direction, PaddingDirection::Left),
            )),
            None => [&config, &sidecar(dir, "special_tokens_map.json")?]
                .into_iter()
                .find_map(|c| c.get("pad_token").and_then(token_text))
                .map(|t| (t.to_owned(), left(&config, "padding_side"))),
        };
        let Some((pad_token, pad_left)) = pad else {
            return Err(NnError::TokenizerFile {
                path: file,
                problem: "names no pad token (no \"padding\" section, and no \"pad_token\" in a \
                          tokenizer_config.json or special_tokens_map.json beside it)"
                    .into(),
            });
        };
        let pad_id = tokenizer
            .token_to_id(&pad_token)
            .ok_or_else(|| NnError::NoSpecialToken {
                token: pad_token.clone(),
            })?;
        let truncate_left = match tokenizer.get_truncation() {
            Some(t) => matches!(t.direction, TruncationDirection::Left),
            None => left(&config, "truncation_side"),
        };
        // Lengths are set per call; the file's own settings would act again
        // inside `post_process`.
        tokenizer.with_padding(None);
        tokenizer.with_truncation(None)?;
        let (before, after) = template_specials(&tokenizer)?;
        let end_id = after.last().copied().unwrap_or(pad_id);
        Ok(Self {
            start_id: before.first().copied().unwrap_or(end_id),
            end_id,
            pad_id,
            kind: TokenizerKind::HfJson,
            hf: Some(HfLayout {
                pad_token,
                pad_left,
                truncate_left,
            }),
            tokenizer,
        })
    }
}

/// The special ids the tokenizer's template puts before and after a text.
fn template_specials(tokenizer: &Tokenizer) -> Result<(Vec<u32>, Vec<u32>), NnError> {
    // One placeholder token (id 0), post-processed: specials around it.
    let body = Encoding::from_tokens(vec![Token::new(0, String::new(), (0, 0))], 0);
    let done = tokenizer.post_process(body, None, true)?;
    let special = done.get_special_tokens_mask();
    let at = special.iter().position(|&s| s == 0).unwrap_or(0);
    let ids = done.get_ids();
    Ok((ids[..at].to_vec(), ids[(at + 1).min(ids.len())..].to_vec()))
}

/// [`TextTokenizer::encode_batch`] for a Hugging Face tokenizer: each text
/// without special tokens, cut (on the configured side) to leave room for
/// the ones the template adds, templated, then padded to `context_length`.
pub(super) fn encode_batch<S: AsRef<str>>(
    tok: &TextTokenizer,
    layout: &HfLayout,
    texts: &[S],
    context_length: usize,
) -> Result<(Vec<i64>, usize), NnError> {
    let added = tok
        .tokenizer
        .get_post_processor()
        .map_or(0, |p| p.added_tokens(false));
    if context_length <= added {
        return Err(NnError::ContextTooShort);
    }
    let direction = if layout.truncate_left {
        TruncationDirection::Left
    } else {
        TruncationDirection::Right
    };
    let mut ids = Vec::with_capacity(texts.len() * context_length);
    let mut truncated = 0;
    for t in texts {
        let mut body = tok.tokenizer.encode(t.as_ref(), false)?;
        if body.len() + added > context_length {
            truncated += 1;
            body.truncate(context_length - added, 0, direction);
        }
        let row = tok.tokenizer.post_process(body, None, true)?;
        let row = row.get_ids().iter().map(|&i| i64::from(i));
        let padding = std::iter::repeat_n(i64::from(tok.pad_id), context_length - row.len());
        if layout.pad_left {
            ids.extend(padding.chain(row));
        } else {
            ids.extend(row.chain(padding));
        }
    }
    Ok((ids, truncated))
}

/// The tokenizer to save for a Hugging Face kind: its padding recorded in
/// the file again, so [`TextTokenizer::hf_json`] reads the same back.
pub(super) fn for_saving(tok: &TextTokenizer, layout: &HfLayout) -> Tokenizer {
    let mut t = tok.tokenizer.clone();
    t.with_padding(Some(PaddingParams {
        direction: if layout.pad_left {
            PaddingDirection::Left
        } else {
            PaddingDirection::Right
        },
        pad_id: tok.pad_id,
        pad_token: layout.pad_token.clone(),
        ..Default::default()
    }));
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_paths_only_when_needed() {
        assert_eq!(
            shell_quoted(Path::new("/m/siglip-so400m")),
            "/m/siglip-so400m"
        );
        assert_eq!(
            shell_quoted(Path::new("/m/it's here")),
            r"'/m/it'\''s here'"
        );
    }
}
