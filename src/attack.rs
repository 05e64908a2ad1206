//! Inference-time attacks on watermarked 8-bit images (being written).
