//! The shape of a DINOv2: the fields of Hugging Face transformers'
//! `Dinov2Config` and `Dinov2WithRegistersConfig` (5.25) that build the
//! network or act in training, read from and written to a `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::NnError;

/// Which of the two transformers model classes a configuration describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dinov2ModelType {
    /// `Dinov2Model` (`model_type` `"dinov2"`): no register tokens, position
    /// embeddings interpolated without antialiasing.
    Dinov2,
    /// `Dinov2WithRegistersModel` (`"dinov2_with_registers"`): register
    /// tokens after the class token, position embeddings interpolated with
    /// antialiasing, always a mask token.
    Dinov2WithRegisters,
}

impl Dinov2ModelType {
    /// The `model_type` of a `config.json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Dinov2 => "dinov2",
            Self::Dinov2WithRegisters => "dinov2_with_registers",
        }
    }

    /// The transformers class (`architectures` of a `config.json`).
    pub fn architecture(self) -> &'static str {
        match self {
            Self::Dinov2 => "Dinov2Model",
            Self::Dinov2WithRegisters => "Dinov2WithRegistersModel",
        }
    }
}

/// Shape of a DINOv2 Vision Transformer, in transformers' field names.
/// [`Default`] is `Dinov2Config()`; the fields transformers reads and this
/// crate does not (backbone outputs, `out_features`, `dtype`) are left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dinov2Config {
    /// `dinov2` or `dinov2_with_registers`.
    pub model_type: Dinov2ModelType,
    /// Token width (768).
    pub hidden_size: i64,
    /// Transformer layers (12).
    pub num_hidden_layers: usize,
    /// Attention heads (12); each is `hidden_size / num_attention_heads`
    /// wide, rounded down as transformers does.
    pub num_attention_heads: i64,
    /// MLP width over token width (4); an integer, as transformers types it.
    pub mlp_ratio: i64,
    /// The MLP's activation; only `"gelu"` (exact, erf) is built. SwiGLU
    /// layers use SiLU whatever this says, as transformers does.
    pub hidden_act: String,
    /// Epsilon of every LayerNorm (1e-6).
    pub layer_norm_eps: f64,
    /// Side of the square input the position embeddings are laid out for
    /// (224 in the class defaults, 518 in the released checkpoints).
    pub image_size: i64,
    /// Patch side (14 for `dinov2`, 16 for `dinov2_with_registers` by
    /// default; 14 in every released checkpoint).
    pub patch_size: i64,
    /// Input channels (3).
    pub num_channels: i64,
    /// Whether the query, key and value projections have biases (true).
    pub qkv_bias: bool,
    /// Initial value of the layer scales (1.0); the checkpoint's values
    /// replace it.
    pub layerscale_value: f64,
    /// SwiGLU MLPs (`mlp.weights_in`, `mlp.weights_out`) instead of GELU
    /// ones (`mlp.fc1`, `mlp.fc2`); true for giant.
    pub use_swiglu_ffn: bool,
    /// Register tokens after the class token (0 for `dinov2`, 4 by default
    /// for `dinov2_with_registers`).
    pub num_register_tokens: i64,
    /// Whether `embeddings.mask_token` exists (a `dinov2` field, true by
    /// default; a `dinov2_with_registers` model always has one). Inference
    /// never reads it; it is there so a checkpoint's every key is accounted for.
    pub use_mask_token: bool,
    /// Dropout of the embeddings in training (0).
    pub hidden_dropout_prob: f64,
    /// Dropout of the attention probabilities in training (0).
    pub attention_probs_dropout_prob: f64,
    /// Stochastic depth: the probability that a sample skips a residual
    /// branch in training (0; the same for every layer, as transformers).
    pub drop_path_rate: f64,
    /// Standard deviation of the initial weights (0.02).
    pub initializer_range: f64,
}

impl Default for Dinov2Config {
    /// `Dinov2Config()`: the base shape at 224 pixels, patch 14.
    fn default() -> Self {
        Self {
            model_type: Dinov2ModelType::Dinov2,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            mlp_ratio: 4,
            hidden_act: "gelu".into(),
            layer_norm_eps: 1e-6,
            image_size: 224,
            patch_size: 14,
            num_channels: 3,
            qkv_bias: true,
            layerscale_value: 1.0,
            use_swiglu_ffn: false,
            num_register_tokens: 0,
            use_mask_token: true,
            hidden_dropout_prob: 0.0,
            attention_probs_dropout_prob: 0.0,
            drop_path_rate: 0.0,
            initializer_range: 0.02,
        }
    }
}

impl Dinov2Config {
    /// `Dinov2WithRegistersConfig()`: as [`Default`] but patch 16 and four
    /// register tokens.
    pub fn with_registers_default() -> Self {
        Self {
            model_type: Dinov2ModelType::Dinov2WithRegisters,
            patch_size: 16,
            num_register_tokens: 4,
            ..Self::default()
        }
    }

    /// A released shape (518 pixels, patch 14).
    fn released(hidden_size: i64, num_hidden_layers: usize, num_attention_heads: i64) -> Self {
        Self {
            hidden_size,
            num_hidden_layers,
            num_attention_heads,
            image_size: 518,
            patch_size: 14,
            ..Self::default()
        }
    }

    /// facebook/dinov2-small (ViT-S/14).
    pub fn small() -> Self {
        Self::released(384, 12, 6)
    }

    /// facebook/dinov2-base (ViT-B/14).
    pub fn base() -> Self {
        Self::released(768, 12, 12)
    }

    /// facebook/dinov2-large (ViT-L/14).
    pub fn large() -> Self {
        Self::released(1024, 24, 16)
    }

    /// facebook/dinov2-giant (ViT-g/14): SwiGLU MLPs of 4096 (two thirds of
    /// 1536 x 4, rounded up to a multiple of 8).
    pub fn giant() -> Self {
        Self {
            use_swiglu_ffn: true,
            ..Self::released(1536, 40, 24)
        }
    }

    /// microsoft/rad-dino: the base shape at 518 pixels, patch 14, no
    /// registers (per its published config.json).
    pub fn rad_dino() -> Self {
        Self::base()
    }

    /// The same shape as a `Dinov2WithRegistersModel` with `n` register
    /// tokens (facebook/dinov2-with-registers-* are the released shapes
    /// with 4).
    pub fn with_registers(self, n: i64) -> Self {
        Self {
            model_type: Dinov2ModelType::Dinov2WithRegisters,
            num_register_tokens: n,
            use_mask_token: true,
            ..self
        }
    }

    /// Patches along each side at the native size.
    pub fn grid(&self) -> i64 {
        self.image_size / self.patch_size
    }

    /// Patch tokens at the native size.
    pub fn num_patches(&self) -> i64 {
        self.grid() * self.grid()
    }

    /// Rows of `embeddings.position_embeddings`: the class token's and one
    /// per native patch (register tokens have none).
    pub fn num_positions(&self) -> i64 {
        self.num_patches() + 1
    }

    /// Register tokens (0 for `dinov2` whatever the field says).
    pub fn registers(&self) -> i64 {
        match self.model_type {
            Dinov2ModelType::Dinov2 => 0,
            Dinov2ModelType::Dinov2WithRegisters => self.num_register_tokens,
        }
    }

    /// Tokens before the patch tokens: the class token and the registers.
    pub fn num_prefix_tokens(&self) -> i64 {
        1 + self.registers()
    }

    /// Tokens of a native-size input: `1 + registers + patches`.
    pub fn tokens(&self) -> i64 {
        self.num_prefix_tokens() + self.num_patches()
    }

    /// Width of one attention head (`hidden_size // num_attention_heads`).
    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    /// Width of the concatenated heads (the query, key and value outputs).
    pub fn attention_width(&self) -> i64 {
        self.num_attention_heads * self.head_dim()
    }

    /// Hidden width of the MLP: `int(hidden_size * mlp_ratio)` for GELU; for
    /// SwiGLU two thirds of that, rounded up to a multiple of 8 (transformers'
    /// `Dinov2SwiGLUFFN`), per half of `weights_in`.
    pub fn mlp_hidden(&self) -> i64 {
        let h = self.hidden_size * self.mlp_ratio;
        if self.use_swiglu_ffn {
            // int(h * 2 / 3) for positive h: the float quotient is at least
            // 1/3 from the next integer, so rounding cannot cross it.
            (h * 2 / 3 + 7) / 8 * 8
        } else {
            h
        }
    }

    /// Whether `embeddings.mask_token` exists.
    pub fn has_mask_token(&self) -> bool {
        self.model_type == Dinov2ModelType::Dinov2WithRegisters || self.use_mask_token
    }

    /// Reads a Hugging Face `config.json` (`file` names it in errors). Fields
    /// it lacks take the transformers class defaults; fields that only the
    /// backbone or the loader read are ignored.
    ///
    /// # Errors
    /// [`NnError::ModelConfig`] naming the field: a `model_type` other than
    /// `dinov2` or `dinov2_with_registers`, a field of the wrong type, an
    /// out-of-range value, or one that would change the network in a way not
    /// built here (a `hidden_act` other than `gelu` in a GELU MLP, a
    /// non-square `image_size` or `patch_size`, a `head_dim` other than
    /// `hidden_size // num_attention_heads`).
    pub fn from_hf(config: &Value, file: &Path) -> Result<Self, NnError> {
        let err = |problem: String| NnError::ModelConfig {
            file: file.to_path_buf(),
            problem,
        };
        let obj = config
            .as_object()
            .ok_or_else(|| err("is not a JSON object".into()))?;
        let f = Fields { obj, file };
        let model_type = match obj.get("model_type") {
            Some(Value::String(s)) if s == "dinov2" => Dinov2ModelType::Dinov2,
            Some(Value::String(s)) if s == "dinov2_with_registers" => {
                Dinov2ModelType::Dinov2WithRegisters
            }
            Some(v) => {
                return Err(err(format!(
                    "\"model_type\" is {v}; expected \"dinov2\" or \"dinov2_with_registers\""
                )));
            }
            None => return Err(err("has no \"model_type\"".into())),
        };
        let d = match model_type {
            Dinov2ModelType::Dinov2 => Self::default(),
            Dinov2ModelType::Dinov2WithRegisters => Self::with_registers_default(),
        };
        let c = Self {
            model_type,
            hidden_size: f.int("hidden_size", d.hidden_size, 1)?,
            num_hidden_layers: f.int("num_hidden_layers", d.num_hidden_layers as i64, 0)? as usize,
            num_attention_heads: f.int("num_attention_heads", d.num_attention_heads, 1)?,
            mlp_ratio: f.int("mlp_ratio", d.mlp_ratio, 1)?,
            hidden_act: f.string("hidden_act", &d.hidden_act)?,
            layer_norm_eps: f.float("layer_norm_eps", d.layer_norm_eps)?,
            image_size: f.side("image_size", d.image_size)?,
            patch_size: f.side("patch_size", d.patch_size)?,
            num_channels: f.int("num_channels", d.num_channels, 1)?,
            qkv_bias: f.bool("qkv_bias", d.qkv_bias)?,
            layerscale_value: f.float("layerscale_value", d.layerscale_value)?,
            use_swiglu_ffn: f.bool("use_swiglu_ffn", d.use_swiglu_ffn)?,
            num_register_tokens: match model_type {
                // `Dinov2Config` has no such field; transformers ignores it.
                Dinov2ModelType::Dinov2 => 0,
                Dinov2ModelType::Dinov2WithRegisters => {
                    f.int("num_register_tokens", d.num_register_tokens, 0)?
                }
            },
            use_mask_token: match model_type {
                Dinov2ModelType::Dinov2 => f.bool("use_mask_token", d.use_mask_token)?,
                // `Dinov2WithRegistersConfig` has no such field; the model
                // always has a mask token.
                Dinov2ModelType::Dinov2WithRegisters => true,
            },
            hidden_dropout_prob: f.probability("hidden_dropout_prob", d.hidden_dropout_prob)?,
            attention_probs_dropout_prob: f.probability(
                "attention_probs_dropout_prob",
                d.attention_probs_dropout_prob,
            )?,
            drop_path_rate: f.probability("drop_path_rate", d.drop_path_rate)?,
            initializer_range: f.float("initializer_range", d.initializer_range)?,
        };
        if !c.use_swiglu_ffn && c.hidden_act != "gelu" {
            return Err(err(format!(
                "\"hidden_act\" is \"{}\"; DINOv2 is built with \"gelu\"",
                c.hidden_act
            )));
        }
        if c.layer_norm_eps <= 0.0 {
            return Err(err(format!(
                "\"layer_norm_eps\" is {}; expected a positive number",
                c.layer_norm_eps
            )));
        }
        if c.image_size < c.patch_size {
            return Err(err(format!(
                "\"image_size\" is {}, smaller than \"patch_size\" {}: no patch to embed",
                c.image_size, c.patch_size
            )));
        }
        if c.num_attention_heads > c.hidden_size {
            return Err(err(format!(
                "\"num_attention_heads\" is {}, more than \"hidden_size\" {}: heads of width 0",
                c.num_attention_heads, c.hidden_size
            )));
        }
        // transformers reads `head_dim` when a config.json has one.
        if let Some(v) = obj.get("head_dim").filter(|v| !v.is_null())
            && v.as_i64() != Some(c.head_dim())
        {
            return Err(err(format!(
                "\"head_dim\" is {v}; DINOv2 is built with hidden_size // num_attention_heads = {}",
                c.head_dim()
            )));
        }
        Ok(c)
    }

    /// The `config.json` of this shape, as transformers writes it (less the
    /// backbone fields, which take their defaults): `from_hf` and
    /// transformers' `AutoConfig` / `from_pretrained` both read it.
    pub fn to_hf(&self) -> Value {
        let mut v = json!({
            "architectures": [self.model_type.architecture()],
            "model_type": self.model_type.name(),
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "mlp_ratio": self.mlp_ratio,
            "hidden_act": self.hidden_act,
            "hidden_dropout_prob": self.hidden_dropout_prob,
            "attention_probs_dropout_prob": self.attention_probs_dropout_prob,
            "initializer_range": self.initializer_range,
            "layer_norm_eps": self.layer_norm_eps,
            "image_size": self.image_size,
            "patch_size": self.patch_size,
            "num_channels": self.num_channels,
            "qkv_bias": self.qkv_bias,
            "layerscale_value": self.layerscale_value,
            "drop_path_rate": self.drop_path_rate,
            "use_swiglu_ffn": self.use_swiglu_ffn,
        });
        let obj = v.as_object_mut().expect("an object");
        match self.model_type {
            Dinov2ModelType::Dinov2 => {
                obj.insert("use_mask_token".into(), self.use_mask_token.into());
            }
            Dinov2ModelType::Dinov2WithRegisters => {
                obj.insert(
                    "num_register_tokens".into(),
                    self.num_register_tokens.into(),
                );
            }
        }
        v
    }
}

/// Typed reads of a `config.json`'s fields, with the class defaults.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    file: &'a Path,
}

impl Fields<'_> {
    fn err(&self, field: &str, v: &Value, expected: &str) -> NnError {
        NnError::ModelConfig {
            file: self.file.to_path_buf(),
            problem: format!("\"{field}\" is {v}; expected {expected}"),
        }
    }

    /// The field, `None` when absent (transformers' default then applies).
    fn get(&self, field: &str) -> Option<&Value> {
        self.obj.get(field)
    }

    /// An integer of at least `min` (transformers types these `int`, so
    /// `4.0` is refused as it refuses it).
    fn int(&self, field: &str, default: i64, min: i64) -> Result<i64, NnError> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_i64()
                .filter(|&n| n >= min)
                .ok_or_else(|| self.err(field, v, &format!("an integer of at least {min}"))),
        }
    }

    fn float(&self, field: &str, default: f64) -> Result<f64, NnError> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.err(field, v, "a number")),
        }
    }

    /// A probability in `[0, 1)`.
    fn probability(&self, field: &str, default: f64) -> Result<f64, NnError> {
        let p = self.float(field, default)?;
        if (0.0..1.0).contains(&p) {
            Ok(p)
        } else {
            Err(self.err(field, &json!(p), "a probability in [0, 1)"))
        }
    }

    fn bool(&self, field: &str, default: bool) -> Result<bool, NnError> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(field, v, "true or false")),
        }
    }

    fn string(&self, field: &str, default: &str) -> Result<String, NnError> {
        match self.get(field) {
            None => Ok(default.into()),
            Some(v) => v
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| self.err(field, v, "a string")),
        }
    }

    /// A positive side: an integer or an `[h, w]` pair with `h == w`
    /// (transformers lays the position embeddings out on a square grid).
    fn side(&self, field: &str, default: i64) -> Result<i64, NnError> {
        let expected = "a positive integer or a pair of equal ones (square)";
        match self.get(field) {
            None => Ok(default),
            Some(v) => {
                let n = match v.as_array().map(Vec::as_slice) {
                    Some([a, b]) if a == b => a.as_i64(),
                    Some(_) => None,
                    None => v.as_i64(),
                };
                n.filter(|&n| n > 0)
                    .ok_or_else(|| self.err(field, v, expected))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<Dinov2Config, NnError> {
        Dinov2Config::from_hf(&v, Path::new("config.json"))
    }

    fn problem(v: Value) -> String {
        match parse(v) {
            Err(NnError::ModelConfig { problem, .. }) => problem,
            other => panic!("expected a ModelConfig error, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_the_transformers_classes() {
        assert_eq!(
            parse(json!({"model_type": "dinov2"})).unwrap(),
            Dinov2Config::default()
        );
        let r = parse(json!({"model_type": "dinov2_with_registers"})).unwrap();
        assert_eq!(r, Dinov2Config::with_registers_default());
        assert_eq!(
            (r.patch_size, r.num_register_tokens, r.image_size),
            (16, 4, 224)
        );
        assert!(r.has_mask_token());
    }

    #[test]
    fn released_shapes() {
        let g = Dinov2Config::giant();
        assert_eq!(g.mlp_hidden(), 4096);
        assert_eq!(
            (g.hidden_size, g.num_hidden_layers, g.head_dim()),
            (1536, 40, 64)
        );
        assert_eq!(Dinov2Config::base().tokens(), 1 + 37 * 37);
        assert_eq!(Dinov2Config::base().with_registers(4).tokens(), 5 + 37 * 37);
        assert_eq!(Dinov2Config::small().mlp_hidden(), 1536);
        // The tiny SwiGLU of the fixtures: int(128 * 2 / 3) = 85 -> 88.
        let tiny = Dinov2Config {
            hidden_size: 32,
            use_swiglu_ffn: true,
            ..Dinov2Config::default()
        };
        assert_eq!(tiny.mlp_hidden(), 88);
    }

    #[test]
    fn round_trips_through_hf_json_and_serde() {
        for c in [
            Dinov2Config::small(),
            Dinov2Config::giant(),
            Dinov2Config::rad_dino(),
            Dinov2Config {
                use_mask_token: false,
                qkv_bias: false,
                drop_path_rate: 0.2,
                layer_norm_eps: 1e-5,
                ..Dinov2Config::large()
            },
            Dinov2Config::base().with_registers(4),
            Dinov2Config::with_registers_default(),
        ] {
            assert_eq!(parse(c.to_hf()).unwrap(), c);
            let s = serde_json::to_string(&c).unwrap();
            assert_eq!(serde_json::from_str::<Dinov2Config>(&s).unwrap(), c);
        }
        let j = Dinov2Config::base().with_registers(4).to_hf();
        assert_eq!(j["model_type"], "dinov2_with_registers");
        assert_eq!(j["architectures"][0], "Dinov2WithRegistersModel");
        assert!(j.get("use_mask_token").is_none());
        assert!(
            Dinov2Config::base()
                .to_hf()
                .get("num_register_tokens")
                .is_none()
        );
    }

    #[test]
    fn square_pairs_are_sides() {
        let c = parse(
            json!({"model_type": "dinov2", "image_size": [518, 518], "patch_size": [14, 14]}),
        )
        .unwrap();
        assert_eq!((c.image_size, c.patch_size), (518, 14));
        assert!(
            problem(json!({"model_type": "dinov2", "image_size": [518, 224]}))
                .contains("\"image_size\"")
        );
    }

    #[test]
    fn ignores_what_does_not_build_the_encoder() {
        let c = parse(json!({
            "model_type": "dinov2",
            "num_register_tokens": 4,
            "out_features": ["stage12"],
            "apply_layernorm": false,
            "dtype": "float16",
            "hidden_act": "relu",
            "use_swiglu_ffn": true,
        }))
        .unwrap();
        assert_eq!(c.registers(), 0);
        assert_eq!(c.hidden_act, "relu");
        let c =
            parse(json!({"model_type": "dinov2_with_registers", "use_mask_token": false})).unwrap();
        assert!(c.has_mask_token());
    }

    #[test]
    fn errors_name_the_field() {
        let p = problem(json!({"model_type": "vit"}));
        assert!(p.contains("\"model_type\" is \"vit\""), "{p}");
        assert!(problem(json!({"hidden_size": 768})).contains("model_type"));
        for (field, value) in [
            ("hidden_act", json!("relu")),
            ("mlp_ratio", json!(4.0)),
            ("hidden_size", json!(-1)),
            ("num_hidden_layers", json!("12")),
            ("qkv_bias", json!(1)),
            ("drop_path_rate", json!(1.0)),
            ("hidden_dropout_prob", json!(-0.1)),
            ("layer_norm_eps", json!(0.0)),
            ("patch_size", json!(0)),
            ("head_dim", json!(32)),
            ("num_attention_heads", json!(1000)),
            ("image_size", json!(7)),
        ] {
            let mut v = json!({"model_type": "dinov2"});
            v[field] = value;
            let p = problem(v);
            assert!(p.contains(&format!("\"{field}\"")), "{field}: {p}");
        }
        assert!(problem(json!([])).contains("not a JSON object"));
        let e = parse(json!({"model_type": "vit"})).unwrap_err().to_string();
        assert!(e.starts_with("config.json: "), "{e}");
    }
}
