//! What the process upgrading to this one reads on the report channel.

use std::io::Read;
use std::os::unix::net::UnixStream;

use super::Report;

/// A report whose channel's other end is returned, to read what it says.
fn a_report() -> (Report, UnixStream) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    (
        Report {
            channel: ours,
            upgrader: 1,
        },
        theirs,
    )
}

fn said(mut theirs: UnixStream) -> String {
    let mut text = String::new();
    theirs.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn a_bad_flag_is_quoted_by_the_first_line_of_its_message() {
    let (report, theirs) = a_report();
    report
        .bad_flag("error: unexpected argument '--nope' found\n\nUsage: greeter-server [OPTIONS]\n");
    assert_eq!(
        said(theirs),
        "failed: greeter-server: unexpected argument '--nope' found\n"
    );
}

#[test]
fn ready_and_a_failure_are_one_line_each() {
    let (report, theirs) = a_report();
    report.ready();
    assert_eq!(said(theirs), "ready\n");
    let (report, theirs) = a_report();
    report.failed(&"cannot bind\nthe port");
    assert_eq!(
        said(theirs),
        "failed: greeter-server: cannot bind the port\n"
    );
}
