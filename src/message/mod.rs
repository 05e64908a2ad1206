//! The message: what a watermark says and how it is laid out, coded and decided. Bits and their
//! sources (`watermark`), where they sit in the map (`layout`), payloads and their BCH code
//! (`payload`, `bch`), keys (`key`), the binarization of a read map (`binarize`), the detection
//! decision (`detect`), and the breadth of the photo reader's search that the code is sized for
//! (`search`).

pub mod bch;
pub mod binarize;
pub mod detect;
pub mod key;
pub mod layout;
pub mod payload;
pub mod search;
pub mod watermark;
