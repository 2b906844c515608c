//! How a transformer's token sequence becomes one feature vector.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// The feature of a ViT-style encoder (`--pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pooling {
    /// The class token after the final norm (what Hugging Face's
    /// `pooler_output` is for DINOv2).
    #[default]
    Cls,
    /// The mean of the patch tokens after the final norm (class and register
    /// tokens excluded).
    Mean,
    /// The class token and the mean patch token concatenated: DINOv2's
    /// linear evaluation (twice the width).
    #[serde(rename = "cls+mean")]
    ClsMean,
}

impl Pooling {
    /// Every pooling, in the order help lists them.
    pub const ALL: [Self; 3] = [Self::Cls, Self::Mean, Self::ClsMean];

    /// The flag value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Cls => "cls",
            Self::Mean => "mean",
            Self::ClsMean => "cls+mean",
        }
    }

    /// Feature width for tokens of `width`.
    pub fn dim(self, width: i64) -> i64 {
        match self {
            Self::ClsMean => 2 * width,
            _ => width,
        }
    }

    /// Pools normalised tokens `[n, 1 + prefix + patches, width]` whose
    /// first token is the class token and whose next `prefix` tokens are
    /// registers (not patches).
    pub fn pool(self, tokens: &Tensor, prefix: i64) -> Tensor {
        let cls = || tokens.select(1, 0);
        let mean = || {
            tokens
                .narrow(1, 1 + prefix, tokens.size()[1] - 1 - prefix)
                .mean_dim(1, false, None)
        };
        match self {
            Self::Cls => cls(),
            Self::Mean => mean(),
            Self::ClsMean => Tensor::cat(&[cls(), mean()], 1),
        }
    }
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Pooling {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown pooling '{s}' (known: cls, mean, cls+mean)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_skip_registers() {
        // n=1, tokens: cls=1, one register=100, patches 2 and 4.
        let t = Tensor::from_slice(&[1f32, 100., 2., 4.]).view([1, 4, 1]);
        let v = |p: Pooling| Vec::<f32>::try_from(p.pool(&t, 1).flatten(0, -1)).unwrap();
        assert_eq!(v(Pooling::Cls), [1.0]);
        assert_eq!(v(Pooling::Mean), [3.0]);
        assert_eq!(v(Pooling::ClsMean), [1.0, 3.0]);
        assert_eq!("cls+mean".parse::<Pooling>().unwrap(), Pooling::ClsMean);
        assert!("max".parse::<Pooling>().is_err());
    }
}
