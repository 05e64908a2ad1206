//! What every layer leans on: the torch device and threads (`device`), libtorch's errors
//! (`torch_error`), the allocator's behaviour (`alloc`), files written whole (`fsutil`) and the
//! splitmix hash behind every seed (`splitmix`).

pub mod alloc;
pub mod device;
pub mod fsutil;
pub mod splitmix;
pub mod torch_error;
