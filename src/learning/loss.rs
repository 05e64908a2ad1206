//! Per-head losses with Keras semantics: mean squared error, or binary cross-entropy with the
//! predictions clipped to [1e-7, 1 - 1e-7] (Keras' epsilon) before the logarithm.

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Keras' `epsilon()`, the clip margin of its binary cross-entropy.
pub const KERAS_EPSILON: f64 = 1e-7;

/// The loss of one head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Mean squared error.
    Mse,
    /// Binary cross-entropy, predictions clipped to [1e-7, 1 - 1e-7] as Keras does.
    Bce,
}

/// Where the watermark head's loss is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    /// The whole map, as the seed does: 16 bits among 784 pixels, so "all zeros" scores well.
    #[default]
    Map,
    /// Only the watermark block: the loss sees nothing but the bits.
    Block,
}

/// Element-wise loss, not yet reduced.
fn elementwise(kind: LossKind, prediction: &Tensor, target: &Tensor) -> Tensor {
    match kind {
        LossKind::Mse => (prediction - target).square(),
        LossKind::Bce => {
            let p = prediction.clamp(KERAS_EPSILON, 1.0 - KERAS_EPSILON);
            let log_not_p = p.neg().log1p();
            let not_target = target.neg() + 1.0;
            (target * p.log() + not_target * log_not_p).neg()
        }
    }
}

/// Mean loss over all elements.
pub fn mean_loss(kind: LossKind, prediction: &Tensor, target: &Tensor) -> Tensor {
    elementwise(kind, prediction, target).mean(Kind::Float)
}

/// Weighted mean loss: sum(w * loss) / sum(w), `weights` broadcastable to the prediction. With
/// 0/1 weights this is the mean over the elements where the weight is 1.
pub fn weighted_mean_loss(
    kind: LossKind,
    prediction: &Tensor,
    target: &Tensor,
    weights: &Tensor,
) -> Tensor {
    let per_element = elementwise(kind, prediction, target) * weights;
    let total_weight = weights.expand_as(prediction).sum(Kind::Float);
    per_element.sum(Kind::Float) / total_weight
}

/// The losses of one batch: each head's mean loss and their weighted sum, which is trained.
pub struct Losses {
    /// The weighted sum of both heads' losses: what is trained.
    pub total: Tensor,
    /// The image head's mean loss.
    pub image: Tensor,
    /// The watermark head's mean loss (weighted by pixel as `loss.watermark_region` says).
    pub watermark: Tensor,
}
