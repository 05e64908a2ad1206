//! libtorch's errors as one line: a C++ exception's message carries "Exception raised from ..."
//! and a frame list with the build machine's paths, which tell a user nothing.

/// `text` without a C++ exception's source location and frames, trimmed.
pub fn without_cpp_backtrace(text: &str) -> String {
    let cut = text.find("Exception raised from").unwrap_or(text.len());
    text[..cut].trim_end().to_string()
}

/// The gist of a libtorch error: its first line, without tch's "Internal torch error: " prefix,
/// up to the first sentence's end (libtorch follows it with generic advice).
pub fn summary(err: &tch::TchError) -> String {
    let text = without_cpp_backtrace(&err.to_string());
    let line = text.lines().next().unwrap_or_default();
    let line = line.strip_prefix("Internal torch error: ").unwrap_or(line);
    match line.find(". ") {
        Some(end) => line[..end].to_string(),
        None => line.trim_end_matches('.').to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backtrace_and_advice_are_dropped() {
        let raw = "PytorchStreamReader failed reading zip archive: failed \
                   finding central directory. This is an internal miniz error.\nException raised \
                   from valid at /__w/pytorch/inline_container.cc:242 (most recent call first):\n\
                   frame #0: c10::Error::Error() + 0x9d (0x7f in /x/libc10.so)\n";
        let err = tch::TchError::Torch(raw.to_string());
        assert_eq!(
            summary(&err),
            "PytorchStreamReader failed reading zip archive: failed finding central directory"
        );
        assert_eq!(
            without_cpp_backtrace(&format!("error: a.ot: {raw}")),
            format!("error: a.ot: {}", raw.lines().next().unwrap())
        );
    }
}
