//! Vocabularies trained here on report texts, for the models pretrained
//! from scratch: a BPE with CLIP's cleaning ([`TextTokenizer::train`]) and a
//! BERT WordPiece ([`TextTokenizer::train_wordpiece`]). Both are
//! deterministic, unlike the `tokenizers` crate's trainers.

use std::collections::{BTreeMap, BTreeSet};

use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::{
    AddedToken, Normalizer, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer,
    Tokenizer,
};

use super::{
    CLIP_EOT, CLIP_SOT, PAD, TextTokenizer, TokenizerKind, UNK, clip_normalizer, clip_split,
    numbered,
};
use crate::error::NnError;

impl TextTokenizer {
    /// Trains a BPE vocabulary of at most `vocab_size` ids on `texts`, with
    /// CLIP's cleaning, pre-tokeniser and `</w>` word ends. Ids: `<|pad|>` 0,
    /// `<|unk|>` 1, `<|startoftext|>` 2, the characters seen (sorted), the
    /// merges in order, and `<|endoftext|>` last, so CLIP's text tower finds
    /// it as the largest id.
    ///
    /// The `tokenizers` crate's trainer breaks ties through hash-map order,
    /// which varies between runs; this one counts in ordered maps and breaks
    /// ties by the pair's text, so the same texts always give the same
    /// vocabulary. It recounts pairs for every merge, which suits the small
    /// vocabularies of models pretrained here.
    ///
    /// # Errors
    /// A `vocab_size` too small for the special tokens and the alphabet.
    pub fn train<S: AsRef<str>>(texts: &[S], vocab_size: usize) -> Result<Self, NnError> {
        let normalizer = clip_normalizer()?;
        let split = clip_split()?;
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for t in texts {
            let mut pre = PreTokenizedString::from(t.as_ref());
            pre.normalize(|s| normalizer.normalize(s))?;
            split.pre_tokenize(&mut pre)?;
            for (w, _, _) in pre.get_splits(OffsetReferential::Original, OffsetType::Char) {
                *counts.entry(w.to_owned()).or_default() += 1;
            }
        }
        let mut words: Vec<(Vec<String>, u64)> = counts
            .into_iter()
            .map(|(w, c)| {
                let mut sym: Vec<String> = w.chars().map(String::from).collect();
                if let Some(last) = sym.last_mut() {
                    last.push_str("</w>");
                }
                (sym, c)
            })
            .collect();
        let alphabet: BTreeSet<String> = words.iter().flat_map(|(s, _)| s.clone()).collect();
        let mut vocab: Vec<String> = vec![PAD.into(), UNK.into(), CLIP_SOT.into()];
        vocab.extend(alphabet);
        // One id stays free for the end token.
        if vocab.len() + 1 > vocab_size {
            return Err(NnError::VocabularyTooSmall {
                size: vocab_size,
                needed: vocab.len() + 1,
            });
        }
        let mut merges: Vec<(String, String)> = Vec::new();
        while vocab.len() + 1 < vocab_size {
            let mut pairs: BTreeMap<(&str, &str), u64> = BTreeMap::new();
            for (sym, c) in &words {
                for p in sym.windows(2) {
                    *pairs.entry((&p[0], &p[1])).or_default() += c;
                }
            }
            // Largest count; among equal counts the first pair in text order.
            let Some(((a, b), n)) = pairs.into_iter().fold(
                None,
                |best: Option<((&str, &str), u64)>, (p, n)| match best {
                    Some((_, m)) if m >= n => best,
                    _ => Some((p, n)),
                },
            ) else {
                break;
            };
            if n < 2 {
                break;
            }
            let (a, b) = (a.to_owned(), b.to_owned());
            let joined = format!("{a}{b}");
            for (sym, _) in &mut words {
                let mut i = 0;
                while i + 1 < sym.len() {
                    if sym[i] == a && sym[i + 1] == b {
                        sym[i] = joined.clone();
                        sym.remove(i + 1);
                    }
                    i += 1;
                }
            }
            if !vocab.contains(&joined) {
                vocab.push(joined);
            }
            merges.push((a, b));
        }
        let ids = numbered(vocab);
        let bpe = BPE::builder()
            .vocab_and_merges(ids, merges)
            .unk_token(UNK.into())
            .end_of_word_suffix("</w>".into())
            .build()?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_normalizer(Some(normalizer));
        tokenizer.with_pre_tokenizer(Some(split));
        tokenizer.add_special_tokens(&[
            AddedToken::from(PAD, true),
            AddedToken::from(UNK, true),
            AddedToken::from(CLIP_SOT, true),
            AddedToken::from(CLIP_EOT, true),
        ]);
        Self::with_specials(
            tokenizer,
            TokenizerKind::Trained,
            CLIP_SOT,
            CLIP_EOT,
            Some(PAD),
        )
    }

    /// Builds a BERT WordPiece vocabulary of at most `vocab_size` ids from
    /// `texts` (for BERT-style text encoders pretrained from scratch here):
    /// `[PAD]` 0, `[UNK]` 1, `[CLS]` 2, `[SEP]` 3, `[MASK]` 4, every
    /// character seen both word-initial and as a `##` continuation (sorted),
    /// then whole words by falling count (ties by text). Greedy longest-match
    /// then reads a frequent word as one id and spells a rare one, so nothing
    /// maps to `[UNK]`. Cleaning is BERT's, lower-cased. Deterministic.
    ///
    /// # Errors
    /// A `vocab_size` below the special tokens and the characters.
    pub fn train_wordpiece<S: AsRef<str>>(texts: &[S], vocab_size: usize) -> Result<Self, NnError> {
        let normalizer = BertNormalizer::new(true, true, None, true);
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for t in texts {
            let mut pre = PreTokenizedString::from(t.as_ref());
            pre.normalize(|s| normalizer.normalize(s))?;
            BertPreTokenizer.pre_tokenize(&mut pre)?;
            for (w, _, _) in pre.get_splits(OffsetReferential::Original, OffsetType::Char) {
                *counts.entry(w.to_owned()).or_default() += 1;
            }
        }
        let chars: BTreeSet<char> = counts.keys().flat_map(|w| w.chars()).collect();
        let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            .map(String::from)
            .to_vec();
        vocab.extend(chars.iter().map(|c| c.to_string()));
        vocab.extend(chars.iter().map(|c| format!("##{c}")));
        if vocab.len() > vocab_size {
            return Err(NnError::VocabularyTooSmall {
                size: vocab_size,
                needed: vocab.len(),
            });
        }
        let mut words: Vec<(String, u64)> = counts
            .into_iter()
            .filter(|(w, _)| w.chars().count() > 1)
            .collect();
        words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let room = vocab_size - vocab.len();
        vocab.extend(words.into_iter().take(room).map(|(w, _)| w));
        let ids = numbered(vocab);
        let wp = WordPiece::builder()
            .vocab(ids)
            .unk_token("[UNK]".into())
            .build()?;
        let mut tokenizer = Tokenizer::new(wp);
        tokenizer.with_normalizer(Some(normalizer));
        tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
        tokenizer.add_special_tokens(
            &["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].map(|t| AddedToken::from(t, true)),
        );
        Self::with_specials(
            tokenizer,
            TokenizerKind::WordPiece,
            "[CLS]",
            "[SEP]",
            Some("[PAD]"),
        )
    }
}
