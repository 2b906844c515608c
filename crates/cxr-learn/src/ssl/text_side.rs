//! The text side shared by ConVIRT and GLoRIA (docs/ssl-methods.md
//! (ConVIRT; GLoRIA)): report sections and sentence splitting by each method's
//! rules, a bank of every train row's candidate sentences encoded once, the
//! per-step random choice of one sentence per row, and a BERT text tower
//! with a WordPiece vocabulary trained on the train split's reports.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use cxr_data::augment::rng_for;
use cxr_data::store::read::Store;
use cxr_nn::arch::bert::{Bert, BertConfig, BertOutput};
use cxr_nn::text::{TextTokenizer, impression};
use rand::Rng;
use tch::nn;
use tch::{Device, Kind, Tensor};

use crate::error::Error;

/// How a sentence embedding is read off BERT's token states (ConVIRT `--pool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// Mean of the last layer over non-pad tokens, `[CLS]`/`[SEP]` included
    /// (ConVIRT's code default).
    Mean,
    /// The last layer's `[CLS]` state.
    Cls,
    /// BERT's pooler: `tanh(dense([CLS]))`.
    Pooler,
    /// Element-wise maximum of the last layer over non-pad tokens.
    Max,
}

/// Shape, vocabulary and freezing of a BERT text tower.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BertSettings {
    /// Transformer layers (Bio_ClinicalBERT: 12; tiny: 2).
    pub layers: usize,
    /// Token width (768; tiny 128).
    pub hidden: i64,
    /// Attention heads (12; tiny 2).
    pub heads: i64,
    /// Feed-forward width (3072; tiny 512).
    pub intermediate: i64,
    /// Tokens per sentence, `[CLS]` and `[SEP]` included; longer sentences
    /// are truncated (counted in the run's `text` record).
    pub context_length: i64,
    /// Size of the WordPiece vocabulary trained on the train reports.
    pub vocab_size: usize,
    /// An existing tokenizer file (`tokenizer.json`, BERT `vocab.txt`)
    /// instead of training one.
    pub tokenizer: Option<PathBuf>,
    /// Freeze the embeddings and the first this many layers (`None`: train
    /// everything, as the tiny recipes do from random weights; ConVIRT's
    /// paper: 6).
    pub freeze_layers: Option<usize>,
}

impl BertSettings {
    /// The tiny BERT of docs/ssl-methods.md (Phantom-scale configurations): 2 layers, width 128, 2 heads,
    /// FFN 512, context 48, a 600-id vocabulary, nothing frozen.
    pub fn tiny() -> Self {
        Self {
            layers: 2,
            hidden: 128,
            heads: 2,
            intermediate: 512,
            context_length: 48,
            vocab_size: 600,
            tokenizer: None,
            freeze_layers: None,
        }
    }

    /// BERT-base (Bio_ClinicalBERT's shape) with a trained 8,192-id
    /// vocabulary; `context_length` as the method truncates (GLoRIA: 97).
    pub fn base(context_length: i64) -> Self {
        let c = BertConfig::clinical_bert_base();
        Self {
            layers: c.layers,
            hidden: c.hidden,
            heads: c.heads,
            intermediate: c.intermediate,
            context_length,
            vocab_size: 8192,
            tokenizer: None,
            freeze_layers: None,
        }
    }

    /// The default for `size`-pixel inputs: tiny up to 128 px, BERT-base above.
    pub fn for_size(size: i64, base_context: i64) -> Self {
        if size <= 128 {
            Self::tiny()
        } else {
            Self::base(base_context)
        }
    }
}

/// The text after `header` up to the next of `stops` (whitespace collapsed),
/// or `None` when the report has no such header.
fn section(report: &str, header: &str, stops: &[&str]) -> Option<String> {
    let pos = report.find(header)?;
    let mut rest = &report[pos + header.len()..];
    for stop in stops {
        if let Some(i) = rest.find(stop) {
            rest = &rest[..i];
        }
    }
    Some(rest.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// ConVIRT's text (docs/ssl-methods.md (ConVIRT): "use all sections"): FINDINGS and IMPRESSION; a
/// report with neither header is taken whole.
pub fn findings_and_impression(report: &str) -> String {
    let findings = section(report, "FINDINGS:", &["IMPRESSION:"]);
    let imp = report.contains("IMPRESSION:").then(|| impression(report));
    match (findings, imp) {
        (None, None) => report.split_whitespace().collect::<Vec<_>>().join(" "),
        (f, i) => [f, i].into_iter().flatten().collect::<Vec<_>>().join(" "),
    }
}

/// Splits at numbered-list markers (`12.` after a non-alphanumeric or at
/// the start), as GLoRIA's `[0-9]+\.` splitter does except that a decimal
/// inside a number (`1.5`) is left alone.
fn split_numbered(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        let at_word_start = i == 0 || !bytes[i - 1].is_ascii_alphanumeric() && bytes[i - 1] != b'.';
        if bytes[i].is_ascii_digit() && at_word_start {
            let mut j = i;
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
            }
            let decimal = bytes.get(j + 1).is_some_and(u8::is_ascii_digit);
            if bytes.get(j) == Some(&b'.') && !decimal {
                parts.push(&text[start..i]);
                start = j + 1;
                i = j + 1;
                continue;
            }
            i = j;
            continue;
        }
        i += 1;
    }
    parts.push(&text[start..]);
    parts
}

/// Sentences at periods (not inside a decimal number) and numbered-list markers.
fn split_sentences(text: &str) -> Vec<String> {
    let text = text.replace(['\n', '\r'], " ");
    let mut out = Vec::new();
    for part in split_numbered(&text) {
        let chars: Vec<char> = part.chars().collect();
        let mut cur = String::new();
        for (k, &c) in chars.iter().enumerate() {
            let decimal = c == '.'
                && k > 0
                && chars[k - 1].is_ascii_digit()
                && chars.get(k + 1).is_some_and(char::is_ascii_digit);
            if c == '.' && !decimal {
                out.push(std::mem::take(&mut cur));
            } else {
                cur.push(c);
            }
        }
        out.push(cur);
    }
    out.into_iter()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .collect()
}

/// GLoRIA's text: the IMPRESSION section; `None` for a report with
/// FINDINGS but no IMPRESSION (the reference drops those studies); a report
/// with neither header is taken whole.
fn impression_section(report: &str) -> Option<String> {
    if report.contains("IMPRESSION:") {
        Some(impression(report))
    } else if report.contains("FINDINGS:") {
        None
    } else {
        Some(report.to_owned())
    }
}

/// ConVIRT's sentences (docs/ssl-methods.md (ConVIRT)): findings and impression split into
/// sentences, those of three whitespace words or fewer dropped.
pub fn convirt_sentences(report: &str) -> Vec<String> {
    split_sentences(&findings_and_impression(report))
        .into_iter()
        .filter(|s| s.split_whitespace().count() > 3)
        .map(|s| format!("{s}."))
        .collect()
}

/// GLoRIA's sentences (docs/ssl-methods.md (GLoRIA)) from the impression: split at numbered
/// markers and periods, lower-cased, reduced to ASCII alphanumeric tokens
/// joined by spaces; sentences of one token or fewer dropped; stops once
/// the cumulative token count is exactly `captions_per_image` (5), as the
/// reference does.
pub fn gloria_sentences(report: &str) -> Vec<String> {
    const CAPTIONS_PER_IMAGE: usize = 5;
    let mut out = Vec::new();
    let mut count = 0;
    let Some(text) = impression_section(report) else {
        return out;
    };
    for s in split_sentences(&text) {
        let lower = s.to_lowercase();
        let tokens: Vec<&str> = lower
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .filter(|t| !t.is_empty())
            .collect();
        if tokens.len() <= 1 {
            continue;
        }
        let kept: Vec<String> = tokens
            .iter()
            .map(|t| t.chars().filter(char::is_ascii).collect::<String>())
            .filter(|t| !t.is_empty())
            .collect();
        count += kept.len();
        out.push(kept.join(" "));
        if count == CAPTIONS_PER_IMAGE {
            break;
        }
    }
    out
}

/// Every train row's candidate sentences, tokenised once: `[CLS]`, the
/// pieces, `[SEP]`, zero padding to the context length.
#[derive(Debug)]
pub struct SentenceBank {
    /// The sentences, tokenised.
    encoded: Encoded,
    /// Store row -> its sentences' first index and count.
    position: HashMap<usize, (usize, usize)>,
    /// Train rows with at least one sentence.
    pub rows: Vec<usize>,
    /// Sentences longer than the context (cut, `[SEP]` kept last).
    pub truncated: usize,
    /// Total candidate sentences.
    pub sentences: usize,
    /// Train rows without a report.
    pub without_report: usize,
    /// Train rows whose report gave no sentence.
    pub without_sentence: usize,
}

/// A batch of chosen sentences, trimmed to the longest one.
#[derive(Debug)]
pub struct SentenceBatch {
    /// Ids `[n, t]`.
    pub ids: Tensor,
    /// 1 for real tokens, 0 for padding, `[n, t]`.
    pub mask: Tensor,
    /// As [`SentenceBank`]'s `word_of_token`, `[n, t]`.
    pub word_of_token: Tensor,
    /// Words per sentence (without `[CLS]`, `[SEP]`).
    pub words: Vec<i64>,
    /// Chosen sentence of each entry (bank index), for duplicate counting.
    pub chosen: Vec<usize>,
}

impl SentenceBank {
    /// Splits every `train` row's report with `split`, trains (or opens)
    /// the tokenizer on the train reports' sentences and encodes them.
    ///
    /// # Errors
    /// A store without a `report` column (named), no usable sentence in
    /// the train split, or a tokenizer problem.
    pub fn new(
        method: &str,
        store: &Store,
        train: &[usize],
        split: fn(&str) -> Vec<String>,
        settings: &BertSettings,
        device: Device,
    ) -> Result<(Self, TextTokenizer), Error> {
        store.require_reports().map_err(|cause| Error::NoReports {
            method: method.into(),
            cause: Box::new(cause),
        })?;
        let mut per_row = Vec::new();
        let (mut without_report, mut without_sentence) = (0, 0);
        for &i in train {
            match store.rows[i].report.as_deref() {
                None => without_report += 1,
                Some(r) => {
                    let s = split(r);
                    if s.is_empty() {
                        without_sentence += 1;
                    } else {
                        per_row.push((i, s));
                    }
                }
            }
        }
        if per_row.is_empty() {
            return Err(Error::NoReportSentences {
                method: method.into(),
                images: train.len(),
                without_report,
                without_sentence,
            });
        }
        let all: Vec<&str> = per_row
            .iter()
            .flat_map(|(_, s)| s.iter().map(String::as_str))
            .collect();
        let tokenizer = match &settings.tokenizer {
            Some(path) => TextTokenizer::open(path).map_err(Error::Tokenizer)?,
            None => TextTokenizer::train_wordpiece(&all, settings.vocab_size)
                .map_err(Error::Tokenizer)?,
        };
        let encoded = Encoded::new(&tokenizer, &all, settings.context_length as usize, device)?;
        let mut position = HashMap::new();
        let mut start = 0;
        for (i, s) in &per_row {
            position.insert(*i, (start, s.len()));
            start += s.len();
        }
        let bank = Self {
            truncated: encoded.truncated,
            encoded,
            position,
            rows: per_row.iter().map(|(i, _)| *i).collect(),
            sentences: all.len(),
            without_report,
            without_sentence,
        };
        Ok((bank, tokenizer))
    }

    /// The rows of `candidates` that have sentences here, in their order.
    pub fn usable(&self, candidates: Vec<usize>) -> Vec<usize> {
        candidates
            .into_iter()
            .filter(|r| self.position.contains_key(r))
            .collect()
    }

    /// One sentence per row of `rows`, drawn uniformly with a stream keyed
    /// by `(step_seed, row)`, so a resumed run draws the same ones.
    pub fn choose(&self, rows: &[usize], step_seed: u64) -> SentenceBatch {
        const SALT: u64 = 0x7365_6e74_656e_6365;
        let chosen: Vec<usize> = rows
            .iter()
            .map(|r| {
                let (start, n) = self.position[r];
                start + rng_for(step_seed ^ SALT, *r as u64).random_range(0..n)
            })
            .collect();
        self.encoded.batch(chosen)
    }
}

/// Sentences tokenised once: `[CLS]`, the pieces, `[SEP]`, zero padding to
/// the context length.
#[derive(Debug)]
struct Encoded {
    /// Token ids `[sentences, context]` on the model's device.
    ids: Tensor,
    /// Non-pad tokens per sentence.
    lengths: Vec<i64>,
    /// Word of each token position, `[CLS]` = 0, the pieces of word k
    /// (`##` continuations joined) = k + 1, `[SEP]` = words + 1, padding
    /// -1; `[sentences, context]` on the model's device.
    word_of_token: Tensor,
    /// Words per sentence after truncation, `[CLS]` and `[SEP]` excluded.
    words: Vec<i64>,
    /// Sentences longer than the context (cut, `[SEP]` kept last).
    truncated: usize,
}

impl Encoded {
    fn new<S: AsRef<str>>(
        tok: &TextTokenizer,
        sentences: &[S],
        ctx: usize,
        device: Device,
    ) -> Result<Self, Error> {
        if ctx < 3 {
            return Err(Error::TextContext { ctx });
        }
        let (mut ids, mut wot) = (Vec::new(), Vec::new());
        let (mut lengths, mut words) = (Vec::new(), Vec::new());
        let mut truncated = 0;
        for s in sentences {
            let (row, word, cut) = encode_words(tok, s.as_ref(), ctx)?;
            truncated += usize::from(cut);
            lengths.push(word.iter().filter(|&&w| w >= 0).count() as i64);
            // [SEP] is word `words + 1`.
            words.push(i64::from(word.iter().copied().max().unwrap_or(1)) - 1);
            ids.extend(row.iter().map(|&(id, _)| id));
            wot.extend(word.iter().map(|&w| i64::from(w)));
        }
        let n = sentences.len() as i64;
        let tensor = |v: &[i64]| {
            Tensor::from_slice(v)
                .view([n, ctx as i64])
                .to_device(device)
        };
        Ok(Self {
            ids: tensor(&ids),
            lengths,
            word_of_token: tensor(&wot),
            words,
            truncated,
        })
    }

    /// The `chosen` sentences as a batch, trimmed to the longest.
    fn batch(&self, chosen: Vec<usize>) -> SentenceBatch {
        let at: Vec<i64> = chosen.iter().map(|&c| c as i64).collect();
        let at = Tensor::from_slice(&at).to_device(self.ids.device());
        let t = chosen.iter().map(|&c| self.lengths[c]).max().unwrap_or(2);
        let ids = self.ids.index_select(0, &at).narrow(1, 0, t);
        let word_of_token = self.word_of_token.index_select(0, &at).narrow(1, 0, t);
        SentenceBatch {
            mask: word_of_token.ge(0).to_kind(Kind::Int64),
            ids,
            word_of_token,
            words: chosen.iter().map(|&c| self.words[c]).collect(),
            chosen,
        }
    }
}

impl SentenceBatch {
    /// Encodes `sentences` as [`SentenceBank`] encodes its own (for text
    /// outside the bank, such as the validation split's reports), trimmed
    /// to the longest; `chosen` numbers them in order.
    ///
    /// # Errors
    /// A context shorter than 3 tokens, or a tokenizer failure.
    pub fn encode(
        tok: &TextTokenizer,
        sentences: &[String],
        ctx: usize,
        device: Device,
    ) -> Result<Self, Error> {
        let encoded = Encoded::new(tok, sentences, ctx, device)?;
        Ok(encoded.batch((0..sentences.len()).collect()))
    }
}

/// `[CLS] + pieces + [SEP]` of one sentence with each position's word
/// (see [`SentenceBank`]), padded to `ctx`; whether it was cut. Words are
/// the sentence's whitespace words, each encoded on its own so its pieces
/// are known without reading the vocabulary (for sentences of plain words
/// WordPiece gives the same pieces as encoding the whole sentence).
#[allow(clippy::type_complexity)]
fn encode_words(
    tok: &TextTokenizer,
    sentence: &str,
    ctx: usize,
) -> Result<(Vec<(i64, i32)>, Vec<i32>, bool), Error> {
    let mut row: Vec<(i64, i32)> = vec![(i64::from(tok.start_id), 0)];
    let mut word = 0;
    for w in sentence.split_whitespace() {
        let pieces = tok.encode(w).map_err(Error::Tokenizer)?;
        if pieces.is_empty() {
            continue;
        }
        word += 1;
        row.extend(pieces.iter().map(|&p| (i64::from(p), word)));
    }
    let cut = row.len() + 1 > ctx;
    row.truncate(ctx - 1);
    let last_word = row.last().map_or(0, |&(_, w)| w);
    row.push((i64::from(tok.end_id), last_word + 1));
    let words: Vec<i32> = row
        .iter()
        .map(|&(_, w)| w)
        .chain(std::iter::repeat_n(-1, ctx - row.len()))
        .collect();
    row.resize(ctx, (i64::from(tok.pad_id), -1));
    Ok((row, words, cut))
}

/// BERT with a trained vocabulary, its embeddings and first layers
/// optionally frozen.
#[derive(Debug)]
pub struct TextTower {
    /// The encoder.
    pub bert: Bert,
}

impl TextTower {
    /// Builds BERT under `bert.` in `vs` with `vocab` ids and freezes per
    /// `settings` (`bert.embeddings.*` and `bert.encoder.layer.{0..n}.*`
    /// stop requiring gradients).
    pub fn new(vs: &nn::VarStore, settings: &BertSettings, vocab: usize) -> Self {
        let config = BertConfig {
            vocab_size: vocab as i64,
            hidden: settings.hidden,
            layers: settings.layers,
            heads: settings.heads,
            intermediate: settings.intermediate,
            max_positions: settings.context_length,
            type_vocab_size: 2,
        };
        let bert = Bert::new(&(vs.root() / "bert"), &config);
        if let Some(n) = settings.freeze_layers {
            for (name, t) in vs.variables() {
                let Some(local) = name.strip_prefix("bert.") else {
                    continue;
                };
                let frozen = local.starts_with("embeddings.")
                    || (0..n).any(|l| local.starts_with(&format!("encoder.layer.{l}.")));
                if frozen {
                    let _ = t.set_requires_grad(false);
                }
            }
        }
        Self { bert }
    }

    /// BERT's outputs for a batch.
    pub fn forward(&self, batch: &SentenceBatch, train: bool) -> BertOutput {
        self.bert.forward_t(&batch.ids, &batch.mask, train)
    }

    /// A sentence embedding `[n, hidden]` by `pooling`.
    pub fn pool(out: &BertOutput, mask: &Tensor, pooling: Pooling) -> Tensor {
        let h = &out.last_hidden;
        match pooling {
            Pooling::Mean => {
                let m = mask.to_kind(h.kind()).unsqueeze(-1);
                (h * &m).sum_dim_intlist(1, false, h.kind())
                    / m.sum_dim_intlist(1, false, h.kind()).clamp_min(1.0)
            }
            Pooling::Cls => h.select(1, 0),
            Pooling::Pooler => out.pooled.shallow_clone(),
            Pooling::Max => {
                let pad = mask.eq(0).unsqueeze(-1);
                h.masked_fill(&pad, f64::NEG_INFINITY).amax([1], false)
            }
        }
    }
}

/// Writes `tokenizer` as `dir/tokenizer.json`, beside an exported encoder,
/// so the text side can be rebuilt.
pub(crate) fn export_tokenizer(tokenizer: &TextTokenizer, dir: &Path) -> Result<(), Error> {
    let tok = dir.join("tokenizer.json");
    tokenizer.save(&tok).map_err(|cause| Error::Export {
        path: tok,
        cause: Box::new(cause),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "FINDINGS: Heart size is normal. Clear lungs. There is a 1.5 cm \
                          nodule in the right upper lobe. IMPRESSION: 1. Small right \
                          pneumothorax. 2. No acute process.";

    #[test]
    fn convirt_keeps_findings_and_impression_sentences_of_four_words() {
        assert_eq!(
            convirt_sentences(REPORT),
            vec![
                "Heart size is normal.",
                "There is a 1.5 cm nodule in the right upper lobe.",
            ]
        );
        // Without headers the whole text is used.
        assert_eq!(
            convirt_sentences("The lungs are clear today. Ok."),
            vec!["The lungs are clear today."]
        );
    }

    #[test]
    fn gloria_reads_the_impression_as_lowercase_alphanumeric_tokens() {
        assert_eq!(
            gloria_sentences(REPORT),
            vec!["small right pneumothorax", "no acute process"]
        );
        // Cumulative count hitting exactly 5 stops; one-token sentences drop.
        let r = "IMPRESSION: Mild edema here. Effusion. Left base opacity. More words here now.";
        assert_eq!(
            gloria_sentences(r),
            vec![
                "mild edema here",
                "left base opacity",
                "more words here now"
            ]
        );
        let r = "IMPRESSION: Mild edema. Left base opacity. More words.";
        assert_eq!(gloria_sentences(r), vec!["mild edema", "left base opacity"]);
        assert!(gloria_sentences("FINDINGS: no impression section").is_empty());
        assert_eq!(
            gloria_sentences("Free text, no headers."),
            vec!["free text no headers"]
        );
    }

    #[test]
    fn words_group_pieces_and_truncation_keeps_sep_last() {
        let texts = [
            "small right pneumothorax",
            "right pneumothorax",
            "small effusion",
        ];
        let tok = TextTokenizer::train_wordpiece(&texts, 80).unwrap();
        // "pneumothorax" is whole, "pleural" is spelt in pieces.
        let (row, words, cut) = encode_words(&tok, "right pleural", 12).unwrap();
        assert!(!cut);
        let zebra = tok.encode("pleural").unwrap().len();
        assert!(zebra > 1);
        let real: Vec<i32> = words.iter().copied().filter(|&w| w >= 0).collect();
        let mut want = vec![0, 1];
        want.extend(std::iter::repeat_n(2, zebra));
        want.push(3);
        assert_eq!(real, want);
        assert_eq!(row[0].0, i64::from(tok.start_id));
        assert_eq!(row[real.len() - 1].0, i64::from(tok.end_id));
        assert_eq!(row[real.len()].0, i64::from(tok.pad_id));
        // Cut inside "pleural": the kept pieces stay word 2, [SEP] is last.
        let (row, words, cut) = encode_words(&tok, "right pleural", 4).unwrap();
        assert!(cut);
        assert_eq!(words, vec![0, 1, 2, 3]);
        assert_eq!(row[3].0, i64::from(tok.end_id));
    }

    #[test]
    fn pooling_modes_on_a_known_tensor() {
        let h = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0, 5.0, 6.0]).view([1, 3, 2]);
        let out = BertOutput {
            last_hidden: h.shallow_clone(),
            hidden_states: vec![h.shallow_clone()],
            pooled: Tensor::from_slice(&[9.0f64, 9.0]).view([1, 2]),
        };
        let mask = Tensor::from_slice(&[1i64, 1, 0]).view([1, 3]);
        let v = |p| Vec::<f64>::try_from(TextTower::pool(&out, &mask, p).view([-1])).unwrap();
        assert_eq!(v(Pooling::Mean), vec![2.0, 3.0]);
        assert_eq!(v(Pooling::Cls), vec![1.0, 2.0]);
        assert_eq!(v(Pooling::Pooler), vec![9.0, 9.0]);
        assert_eq!(v(Pooling::Max), vec![3.0, 4.0]);
    }

    #[test]
    fn freezing_stops_gradients_of_embeddings_and_first_layers() {
        let vs = nn::VarStore::new(Device::Cpu);
        let s = BertSettings {
            layers: 3,
            freeze_layers: Some(1),
            ..BertSettings::tiny()
        };
        let _t = TextTower::new(&vs, &s, 50);
        for (name, t) in vs.variables() {
            let frozen =
                name.starts_with("bert.embeddings.") || name.starts_with("bert.encoder.layer.0.");
            assert_eq!(t.requires_grad(), !frozen, "{name}");
        }
    }
}
