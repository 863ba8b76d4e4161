//! Whether an upgrade can start here.

use std::path::Path;

use super::{refusal, SHELL};

#[test]
fn an_upgrade_without_its_shell_is_refused_in_one_line() {
    assert_eq!(
        refusal(Path::new("/nonexistent/bin/sh")).as_deref(),
        Some("/nonexistent/bin/sh is missing (in a container, replace the container instead)")
    );
    // Present here: refused only where it is missing.
    assert_eq!(refusal(Path::new(SHELL)), None);
}
