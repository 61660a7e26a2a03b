//! A step-by-step script of `tests/sdk/node` (the official Node SDK) against a running
//! gateway: it prints one `{"step", "value"}` line per step and waits for a line on stdin
//! where the test has something to do (publish, play) before it goes on.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::gateway::{Gateway, TEST_TOKEN_ID, TEST_TOKEN_SECRET};

/// How long one step of an SDK script may take (its HTTP calls to a local server).
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// A script of `tests/sdk/node` that prints one `{"step", "value"}` line per step, and waits
/// for a line on stdin where the test has something to do. Killed when dropped, so a failed
/// test leaves no script behind.
#[derive(Debug)]
pub struct NodeScript {
    child: Child,
    stdin: ChildStdin,
    /// Its stdout lines, read by a thread so that a step can time out.
    lines: mpsc::Receiver<String>,
}

impl NodeScript {
    pub fn start(script: &str, gw: &Gateway) -> NodeScript {
        let mut child = Command::new("node")
            .arg(script)
            .current_dir(crate::sdk_node_dir())
            .env("ONAIR_URL", format!("http://{}", gw.http.unwrap()))
            .env("TOKEN_ID", TEST_TOKEN_ID)
            .env("TOKEN_SECRET", TEST_TOKEN_SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node is required (apt-get install -y nodejs)");
        let stdin = child.stdin.take().unwrap();
        let lines = crate::stdout_lines(&mut child);
        NodeScript {
            child,
            stdin,
            lines,
        }
    }

    /// The value of the next step, which must be `name`.
    pub fn step(&mut self, name: &str, gw: &Gateway) -> Value {
        let line = match self.lines.recv_timeout(STEP_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let _ = self.child.kill();
                let mut stderr = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                panic!(
                    "the SDK script stopped before {name} ({e}):\n{stderr}\nserver log:\n{}",
                    gw.log()
                );
            }
        };
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert_eq!(v["step"], name, "{v}");
        v["value"].clone()
    }

    /// Lets the script go on past its wait.
    pub fn resume(&mut self) {
        writeln!(self.stdin, "go").unwrap();
    }

    pub fn finish(mut self) {
        assert!(self.child.wait().unwrap().success());
    }
}

impl Drop for NodeScript {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
