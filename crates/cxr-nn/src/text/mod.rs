//! Text tokenizers for image-text models, built on the `tokenizers` crate:
//! OpenAI CLIP's byte-level BPE (read from `bpe_simple_vocab_16e6.txt.gz`),
//! BERT WordPiece (`vocab.txt`), small BPE vocabularies trained on report
//! texts for the models pretrained here (saved as `tokenizer.json`), and
//! Hugging Face `tokenizer.json` files read as transformers reads them
//! ([`TextTokenizer::hf_json`], in `hf`).
//!
//! Every kind but the last encodes to `[start] + tokens + [end]`, truncated
//! to the context length with the end token forced into the last slot and
//! zero-padded; a Hugging Face tokenizer follows its own template and pad
//! token, as `padding="max_length", truncation=True` does.
//! CLIP's text tower pools at the position of the largest id, so CLIP and
//! trained vocabularies number their end token last (see
//! [`TextTokenizer::end_is_largest`]).

use std::io::Read;
use std::path::Path;

use crate::error::NnError;

use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::normalizers::utils::{Lowercase, Sequence};
use tokenizers::normalizers::{BertNormalizer, replace::Replace, strip::Strip};
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

mod hf;
mod train;

pub use hf::SIGLIP_TOKENIZER_JSON_COMMAND;

/// OpenAI CLIP's start-of-text token.
pub const CLIP_SOT: &str = "<|startoftext|>";
/// OpenAI CLIP's end-of-text token.
pub const CLIP_EOT: &str = "<|endoftext|>";
/// Padding token of trained vocabularies (id 0, so zero padding is padding).
pub const PAD: &str = "<|pad|>";
/// Unknown-character token of trained vocabularies.
pub const UNK: &str = "<|unk|>";

/// OpenAI's pre-tokeniser regex (`simple_tokenizer.py`), on lower-cased text:
/// contractions, letter runs, single digits, runs of other symbols.
const CLIP_PATTERN: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// Which vocabulary a tokenizer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenizerKind {
    /// OpenAI CLIP byte-level BPE (49,408 ids).
    ClipBpe,
    /// BERT WordPiece from a `vocab.txt`.
    WordPiece,
    /// A BPE vocabulary trained by [`TextTokenizer::train`] or loaded from a
    /// `tokenizer.json`.
    Trained,
    /// A Hugging Face `tokenizer.json` with its own special-token template
    /// and pad token ([`TextTokenizer::hf_json`]; SigLIP's).
    HfJson,
}

/// A tokenizer with its start, end and padding ids.
#[derive(Debug, Clone)]
pub struct TextTokenizer {
    tokenizer: Tokenizer,
    /// Which vocabulary this is.
    pub kind: TokenizerKind,
    /// Id put before every sequence.
    pub start_id: u32,
    /// Id put after every sequence (kept when truncating).
    pub end_id: u32,
    /// Id the sequences are padded with.
    pub pad_id: u32,
    /// Padding and truncation sides of a [`TokenizerKind::HfJson`] tokenizer.
    hf: Option<hf::HfLayout>,
}

/// OpenAI's `bytes_to_unicode`: printable bytes map to themselves, the others
/// to code points from 256 up, in that order (which is also the vocabulary's).
fn bytes_to_unicode() -> Vec<(u8, char)> {
    let mut bs: Vec<u32> = (u32::from(b'!')..=u32::from(b'~'))
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter()
        .zip(cs)
        .map(|(b, c)| (b as u8, char::from_u32(c).expect("valid code point")))
        .collect()
}

/// CLIP's text cleaning: NFC (ftfy's default normal form), whitespace runs to
/// one space, stripped, lower-cased. ftfy's mojibake repair and HTML
/// unescaping are not reproduced (reports are plain text).
fn clip_normalizer() -> Result<Sequence, NnError> {
    Ok(Sequence::new(vec![
        NFC.into(),
        Replace::new(
            tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()),
            " ",
        )?
        .into(),
        Strip::new(true, true).into(),
        Lowercase.into(),
    ]))
}

fn clip_split() -> Result<Split, NnError> {
    Ok(Split::new(
        tokenizers::pre_tokenizers::split::SplitPattern::Regex(CLIP_PATTERN.into()),
        SplitDelimiterBehavior::Removed,
        true,
    )?)
}

impl TextTokenizer {
    /// OpenAI CLIP's tokenizer from its merges file
    /// (`bpe_simple_vocab_16e6.txt.gz`, gzip or plain), built as
    /// `simple_tokenizer.py` builds it: the 256 byte symbols, the same with
    /// `</w>`, the first 48,894 merges joined, then start and end of text.
    ///
    /// # Errors
    /// An unreadable or malformed file.
    pub fn clip_bpe(path: &Path) -> Result<Self, NnError> {
        let bytes = std::fs::read(path).map_err(|source| NnError::ReadTokenizer {
            what: "CLIP vocabulary",
            path: path.to_owned(),
            source,
        })?;
        let malformed = |problem: String| NnError::TokenizerFile {
            path: path.to_owned(),
            problem,
        };
        let text = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut s = String::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_string(&mut s)
                .map_err(|e| malformed(format!("is not gzip-compressed text: {e}")))?;
            s
        } else {
            String::from_utf8(bytes).map_err(|e| malformed(format!("is not UTF-8 text: {e}")))?
        };
        // simple_tokenizer.py: merges = lines[1 : 49152 - 256 - 2 + 1].
        let lines: Vec<&str> = text.split('\n').collect();
        let end = (49152 - 256 - 2 + 1).min(lines.len());
        if end < 2 {
            return Err(malformed("holds no BPE merges".to_owned()));
        }
        let mut merges = Vec::with_capacity(end - 1);
        for (i, line) in lines[1..end].iter().enumerate() {
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(a), Some(b), None) => merges.push((a.to_owned(), b.to_owned())),
                _ => {
                    return Err(malformed(format!("line {}: not a merge: {line:?}", i + 2)));
                }
            }
        }
        let symbols: Vec<String> = bytes_to_unicode()
            .into_iter()
            .map(|(_, c)| c.to_string())
            .collect();
        let mut vocab_list: Vec<String> = symbols.clone();
        vocab_list.extend(symbols.iter().map(|s| format!("{s}</w>")));
        vocab_list.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab_list.push(CLIP_SOT.into());
        vocab_list.push(CLIP_EOT.into());
        let vocab = numbered(vocab_list);
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .end_of_word_suffix("</w>".into())
            .build()?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_normalizer(Some(clip_normalizer()?));
        tokenizer.with_pre_tokenizer(Some(PreSequence::new(vec![
            clip_split()?.into(),
            ByteLevel::new(false, true, false).into(),
        ])));
        tokenizer.add_special_tokens(&[
            AddedToken::from(CLIP_SOT, true),
            AddedToken::from(CLIP_EOT, true),
        ]);
        Self::with_specials(tokenizer, TokenizerKind::ClipBpe, CLIP_SOT, CLIP_EOT, None)
    }

    /// A BERT WordPiece tokenizer from a `vocab.txt` (one token a line):
    /// BERT's basic cleaning and punctuation splitting, `[CLS] ... [SEP]`,
    /// padded with `[PAD]`'s id.
    ///
    /// # Errors
    /// An unreadable vocabulary, or one without `[CLS]`, `[SEP]` or `[UNK]`.
    pub fn bert_wordpiece(path: &Path, lowercase: bool) -> Result<Self, NnError> {
        let malformed = |problem: String| NnError::TokenizerFile {
            path: path.to_owned(),
            problem,
        };
        let file = path
            .to_str()
            .ok_or_else(|| malformed("is not valid UTF-8".to_owned()))?;
        let wp = WordPiece::from_file(file)
            .unk_token("[UNK]".into())
            .build()?;
        let mut tokenizer = Tokenizer::new(wp);
        tokenizer.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)));
        tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
        for t in ["[UNK]", "[CLS]", "[SEP]"] {
            if tokenizer.token_to_id(t).is_none() {
                return Err(malformed(format!("has no {t} token")));
            }
        }
        tokenizer.add_special_tokens(&[
            AddedToken::from("[CLS]", true),
            AddedToken::from("[SEP]", true),
            AddedToken::from("[PAD]", true),
        ]);
        Self::with_specials(
            tokenizer,
            TokenizerKind::WordPiece,
            "[CLS]",
            "[SEP]",
            Some("[PAD]"),
        )
    }

    /// Loads a `tokenizer.json` (as [`save`](Self::save) writes it). Its
    /// start and end tokens are CLIP's (`<|startoftext|>`, `<|endoftext|>`)
    /// or BERT's (`[CLS]`, `[SEP]`); padding is `<|pad|>` or `[PAD]` when
    /// present, else id 0. A file with neither pair is read as a Hugging
    /// Face tokenizer ([`TextTokenizer::hf_json`]).
    ///
    /// # Errors
    /// An unreadable file, or one `hf_json` rejects.
    pub fn load(path: &Path) -> Result<Self, NnError> {
        let tokenizer = Tokenizer::from_file(path).map_err(|source| NnError::LoadTokenizer {
            path: path.to_owned(),
            source,
        })?;
        if tokenizer.token_to_id(CLIP_EOT).is_some() {
            Self::with_specials(
                tokenizer,
                TokenizerKind::Trained,
                CLIP_SOT,
                CLIP_EOT,
                Some(PAD),
            )
        } else if tokenizer.token_to_id("[SEP]").is_some() {
            Self::with_specials(
                tokenizer,
                TokenizerKind::WordPiece,
                "[CLS]",
                "[SEP]",
                Some("[PAD]"),
            )
        } else {
            Self::hf_json(path)
        }
    }

    /// Loads a tokenizer file by its form: a `tokenizer.json`, OpenAI CLIP's
    /// merges (gzip, or text starting with `#version`), or else a BERT
    /// `vocab.txt` (WordPiece, lower-cased).
    ///
    /// # Errors
    /// As the loader it picks.
    pub fn open(path: &Path) -> Result<Self, NnError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.ends_with(".json") {
            return Self::load(path);
        }
        let mut head = [0u8; 8];
        let n = std::fs::File::open(path)
            .and_then(|mut f| f.read(&mut head))
            .map_err(|source| NnError::ReadTokenizer {
                what: "tokenizer",
                path: path.to_owned(),
                source,
            })?;
        if head[..n].starts_with(&[0x1f, 0x8b]) || head[..n].starts_with(b"#version") {
            Self::clip_bpe(path)
        } else {
            Self::bert_wordpiece(path, true)
        }
    }

    /// Writes the tokenizer as a `tokenizer.json`.
    ///
    /// # Errors
    /// An unwritable path.
    pub fn save(&self, path: &Path) -> Result<(), NnError> {
        let padded;
        let tokenizer = match &self.hf {
            Some(layout) => {
                padded = hf::for_saving(self, layout);
                &padded
            }
            None => &self.tokenizer,
        };
        tokenizer
            .save(path, false)
            .map_err(|source| NnError::SaveTokenizer {
                path: path.to_owned(),
                source,
            })
    }

    fn with_specials(
        tokenizer: Tokenizer,
        kind: TokenizerKind,
        start: &str,
        end: &str,
        pad: Option<&str>,
    ) -> Result<Self, NnError> {
        let id = |t: &str| {
            tokenizer
                .token_to_id(t)
                .ok_or_else(|| NnError::NoSpecialToken {
                    token: t.to_owned(),
                })
        };
        Ok(Self {
            start_id: id(start)?,
            end_id: id(end)?,
            pad_id: pad.and_then(|p| tokenizer.token_to_id(p)).unwrap_or(0),
            kind,
            hf: None,
            tokenizer,
        })
    }

    /// Number of ids, special tokens included (a text tower's vocabulary size).
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// Whether the end token has the largest id, which CLIP's text tower
    /// relies on to find the sequence end (`argmax` of the ids).
    pub fn end_is_largest(&self) -> bool {
        self.end_id as usize + 1 == self.vocab_size()
    }

    /// Ids of `text` without start or end tokens.
    ///
    /// # Errors
    /// The tokenizer's failure on this text.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, NnError> {
        Ok(self.tokenizer.encode(text, false)?.get_ids().to_vec())
    }

    /// Token ids `[n * context_length]` (row-major) of `texts`: start, tokens,
    /// end, then padding. Longer sequences are cut to `context_length` with
    /// the end token in the last slot (as `clip.tokenize(truncate=True)`);
    /// the second value counts them. A [`TokenizerKind::HfJson`] tokenizer
    /// instead gives what transformers' `tokenizer(texts,
    /// padding="max_length", max_length=context_length, truncation=True)`
    /// gives (see [`TextTokenizer::hf_json`]).
    ///
    /// # Errors
    /// A `context_length` below 2 (or, for a Hugging Face tokenizer, not
    /// above its special tokens), or the tokenizer's failure on a text.
    pub fn encode_batch<S: AsRef<str>>(
        &self,
        texts: &[S],
        context_length: usize,
    ) -> Result<(Vec<i64>, usize), NnError> {
        if let Some(layout) = &self.hf {
            return hf::encode_batch(self, layout, texts, context_length);
        }
        if context_length < 2 {
            return Err(NnError::ContextTooShort);
        }
        let mut ids = Vec::with_capacity(texts.len() * context_length);
        let mut truncated = 0;
        for t in texts {
            let body = self.encode(t.as_ref())?;
            let mut row = Vec::with_capacity(context_length);
            row.push(i64::from(self.start_id));
            row.extend(body.iter().map(|&i| i64::from(i)));
            row.push(i64::from(self.end_id));
            if row.len() > context_length {
                truncated += 1;
                row.truncate(context_length);
                row[context_length - 1] = i64::from(self.end_id);
            }
            row.resize(context_length, i64::from(self.pad_id));
            ids.extend(row);
        }
        Ok((ids, truncated))
    }
}

/// The impression of a report as CheXzero takes it: the text after the last
/// `IMPRESSION:`, up to `RECOMMENDATION(S):` or `NOTIFICATION(S):`,
/// whitespace collapsed; `NO IMPRESSION` when there is none.
pub fn impression(report: &str) -> String {
    let Some(pos) = report.rfind("IMPRESSION:") else {
        return "NO IMPRESSION".into();
    };
    let mut rest = &report[pos + "IMPRESSION:".len()..];
    for stop in [
        "RECOMMENDATION(S):",
        "RECOMMENDATIONS:",
        "RECOMMENDATION:",
        "NOTIFICATION(S):",
        "NOTIFICATIONS:",
        "NOTIFICATION:",
    ] {
        if let Some(i) = rest.find(stop) {
            rest = &rest[..i];
        }
    }
    rest.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A vocabulary whose ids are the tokens' positions in `tokens`: every
/// vocabulary built here (CLIP's, a trained BPE's, a trained WordPiece's)
/// numbers its tokens in the order it lists them.
fn numbered(tokens: Vec<String>) -> Vocab {
    tokens
        .into_iter()
        .enumerate()
        .map(|(i, s)| (s, i as u32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORTS: &[&str] = &[
        "FINDINGS: No pleural effusion. IMPRESSION: Moderate cardiomegaly.",
        "FINDINGS: Small left pneumothorax. IMPRESSION: Small left pneumothorax.",
        "FINDINGS: The lungs are clear. IMPRESSION: No acute cardiopulmonary process.",
        "IMPRESSION: Large right pleural effusion. No pneumothorax.",
    ];

    #[test]
    fn trained_wordpiece_reads_frequent_words_whole_and_spells_the_rest() {
        let tok = TextTokenizer::train_wordpiece(REPORTS, 120).unwrap();
        assert_eq!(tok.kind, TokenizerKind::WordPiece);
        assert_eq!((tok.pad_id, tok.start_id, tok.end_id), (0, 2, 3));
        assert!(tok.vocab_size() <= 120);
        let vocab = tok.tokenizer.get_vocab(true);
        let id = |t: &str| vocab[t];
        // "pneumothorax" occurs three times: one id; a new word is spelt.
        assert_eq!(
            tok.encode("Pneumothorax.").unwrap(),
            vec![id("pneumothorax"), id(".")]
        );
        let spelt = tok.encode("lotion").unwrap();
        assert!(spelt.len() > 1 && !spelt.contains(&1), "{spelt:?}");
        let again = TextTokenizer::train_wordpiece(REPORTS, 120).unwrap();
        assert_eq!(again.tokenizer.get_vocab(true), vocab);
        // A saved vocabulary loads as WordPiece with the same ids.
        let path = std::env::temp_dir().join(format!("cxr-wordpiece-{}.json", std::process::id()));
        tok.save(&path).unwrap();
        let back = TextTokenizer::load(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(back.kind, TokenizerKind::WordPiece);
        assert_eq!(
            back.encode("left pneumothorax").unwrap(),
            tok.encode("left pneumothorax").unwrap()
        );
        assert!(TextTokenizer::train_wordpiece(REPORTS, 10).is_err());
    }

    #[test]
    fn bytes_to_unicode_matches_openai() {
        let m = bytes_to_unicode();
        assert_eq!(m.len(), 256);
        assert_eq!(m[0], (b'!', '!'));
        // The first non-printable byte (0) maps to U+0100, space (32) to U+0120.
        assert_eq!(m[188], (0, '\u{100}'));
        assert!(m.contains(&(b' ', '\u{120}')));
    }

    #[test]
    fn trained_vocabulary_is_deterministic_and_ends_with_eot() {
        let a = TextTokenizer::train(REPORTS, 80).unwrap();
        let b = TextTokenizer::train(REPORTS, 80).unwrap();
        assert!(a.vocab_size() <= 80);
        assert!(a.end_is_largest());
        assert_eq!((a.pad_id, a.start_id), (0, 2));
        let text = "moderate left pleural effusion";
        assert_eq!(a.encode(text).unwrap(), b.encode(text).unwrap());
        // Frequent words become single tokens.
        assert_eq!(a.encode("effusion").unwrap().len(), 1);
        let dir = tempfile_dir();
        let path = dir.join("tokenizer.json");
        a.save(&path).unwrap();
        let c = TextTokenizer::load(&path).unwrap();
        assert_eq!(c.kind, TokenizerKind::Trained);
        assert_eq!(
            (c.start_id, c.end_id, c.pad_id),
            (a.start_id, a.end_id, a.pad_id)
        );
        assert_eq!(a.encode(text).unwrap(), c.encode(text).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn encode_batch_pads_truncates_and_counts() {
        let t = TextTokenizer::train(REPORTS, 60).unwrap();
        let (ids, truncated) = t
            .encode_batch(&["pneumothorax", "no pleural effusion or pneumothorax"], 4)
            .unwrap();
        assert_eq!(ids.len(), 8);
        assert_eq!(truncated, 1);
        let (sot, eot) = (i64::from(t.start_id), i64::from(t.end_id));
        assert_eq!(ids[0], sot);
        assert_eq!(ids[4], sot);
        assert_eq!(ids[7], eot);
        let first_eot = ids[..4].iter().position(|&i| i == eot).unwrap();
        assert!(ids[first_eot + 1..4].iter().all(|&i| i == 0));
        // Unseen characters become the unknown token rather than failing.
        let unk = t.encode("§").unwrap();
        assert_eq!(unk, vec![1]);
        assert!(t.encode_batch(&["x"], 1).is_err());
    }

    #[test]
    fn impression_follows_chexzero() {
        assert_eq!(
            impression(
                "FINDINGS: a. IMPRESSION: old. IMPRESSION:  New\n finding. RECOMMENDATION(S): CT."
            ),
            "New finding."
        );
        assert_eq!(impression("FINDINGS: clear."), "NO IMPRESSION");
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("cxr-nn-text-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
