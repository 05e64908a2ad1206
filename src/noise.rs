//! Training-time noise layers (being written).
