//! Assertions that run code: `javascript` (an expression, a function body, or
//! `file://script.js[:function]`, in an embedded QuickJS sandbox with no file or network access),
//! `python` (the same forms, through `python3`), `exec` (any command), and `webhook` (an HTTP
//! endpoint). Each gets the output and a context `{prompt, vars}` and answers a boolean, a
//! number (a score: it passes when at least `threshold`, or above 0 without one), or a
//! `{pass, score, reason}` object. A script that fails to run is an error of the row, never a
//! pass.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::graded::Verdict;
use crate::template::Vars;

/// Why a script gave no verdict (the row is then an error, never a pass).
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// Its program could not be started.
    #[error("the {what} needs `{program}` on PATH")]
    Missing {
        /// What was run, e.g. `python assertion`.
        what: String,
        /// The program.
        program: String,
        /// Why it could not be started.
        #[source]
        source: std::io::Error,
    },
    /// It ran past its time.
    #[error("the {what} did not finish within {after:?}")]
    TimedOut {
        /// What was run.
        what: String,
        /// Its time.
        after: Duration,
    },
    /// Waiting for it failed.
    #[error("the {what} failed")]
    Wait {
        /// What was run.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The webhook could not be asked or read.
    #[error("webhook {url}")]
    Webhook {
        /// Its URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// It ran, but what it said is no verdict (it raised, answered something unreadable, …).
    #[error("{0}")]
    Answer(String),
}

impl From<String> for ScriptError {
    fn from(message: String) -> Self {
        ScriptError::Answer(message)
    }
}

/// How long a script or webhook may take.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(60);
/// Marks the line holding a python assertion's result, after anything the script printed.
const RESULT_MARKER: &str = "__SLUICE_ASSERT_RESULT__";

/// Runs the assertion's code; the verdict is not yet negated.
pub async fn run_python(
    code: &str,
    threshold: Option<f64>,
    input: &str,
    output: &str,
    vars: &Vars,
) -> Result<Verdict, ScriptError> {
    let (file, function) = match code.trim().strip_prefix("file://") {
        Some(reference) => {
            let (path, function) = match reference.rsplit_once(':') {
                Some((path, function)) if path.ends_with(".py") => (path, Some(function)),
                _ => (reference, None),
            };
            (Some(PathBuf::from(path)), function)
        }
        None => (None, None),
    };
    let request = json!({
        "code": code,
        "file": file.as_ref().map(|f| f.display().to_string()),
        "function": function,
        "output": output,
        "context": {"prompt": input, "vars": vars},
    });
    let stdout = run_process(
        "python3",
        &["-c", PYTHON_RUNNER],
        &request.to_string(),
        "python assertion",
    )
    .await?;
    let result = stdout
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix(RESULT_MARKER))
        .ok_or_else(|| "the python assertion printed no result".to_owned())?;
    let value: Value = serde_json::from_str(result)
        .map_err(|e| format!("the python assertion's result is not JSON: {e}"))?;
    verdict(&value, threshold, "python")
}

/// How much memory one javascript assertion may use.
#[cfg(feature = "javascript")]
const JAVASCRIPT_MEMORY_BYTES: usize = 64 * 1024 * 1024;
/// How long one javascript assertion may run.
const JAVASCRIPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a javascript assertion in a fresh sandbox on a blocking thread.
pub async fn run_javascript(
    code: &str,
    threshold: Option<f64>,
    input: &str,
    output: &str,
    vars: &Vars,
) -> Result<Verdict, ScriptError> {
    let context = json!({"prompt": input, "vars": vars}).to_string();
    let (code, output) = (code.to_owned(), output.to_owned());
    let value = tokio::task::spawn_blocking(move || {
        evaluate_javascript(&code, &output, &context, JAVASCRIPT_TIMEOUT)
    })
    .await
    .map_err(|e| format!("the javascript assertion stopped: {e}"))??;
    verdict(&value, threshold, "javascript")
}

/// A build without the engine refuses javascript assertions by name (the row is an error).
#[cfg(not(feature = "javascript"))]
fn evaluate_javascript(
    _code: &str,
    _output: &str,
    _context: &str,
    _timeout: Duration,
) -> Result<Value, String> {
    Err("this build has no JavaScript engine (it was built without the `javascript` feature); rebuild with default features to run javascript assertions".into())
}

#[cfg(feature = "javascript")]
fn evaluate_javascript(
    code: &str,
    output: &str,
    context: &str,
    timeout: Duration,
) -> Result<Value, String> {
    use rquickjs::{Context, Runtime};
    let runtime = Runtime::new().map_err(|e| format!("cannot start javascript: {e}"))?;
    runtime.set_memory_limit(JAVASCRIPT_MEMORY_BYTES);
    let deadline = std::time::Instant::now() + timeout;
    runtime.set_interrupt_handler(Some(Box::new(move || std::time::Instant::now() > deadline)));
    let engine = Context::full(&runtime).map_err(|e| format!("cannot start javascript: {e}"))?;
    let source = match code.trim().strip_prefix("file://") {
        Some(reference) => {
            let (path, function) = match reference.rsplit_once(':') {
                Some((path, function)) if path.ends_with(".js") || path.ends_with(".cjs") => {
                    (path, Some(function))
                }
                _ => (reference, None),
            };
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            let export = match function {
                Some(name) => format!("module.exports[{}]", serde_json::to_string(name).unwrap_or_default()),
                None => "(typeof module.exports === 'function' ? module.exports : module.exports.default)".to_owned(),
            };
            format!(
                "(function(){{ var module = {{exports: {{}}}}; var exports = module.exports;\n{text}\n;return {export}(output, context); }})()"
            )
        }
        None if code.trim().contains('\n') || code.trim_start().starts_with("return") => {
            format!("(function(output, context){{\n{code}\n}})(output, context)")
        }
        None => format!("({code})"),
    };
    engine.with(|ctx| {
        let describe = |ctx: &rquickjs::Ctx<'_>, error: rquickjs::Error| -> String {
            if let rquickjs::Error::Exception = error {
                let exception = ctx.catch();
                let message = exception
                    .as_exception()
                    .and_then(|e| e.message())
                    .or_else(|| exception.as_string().and_then(|s| s.to_string().ok()))
                    .unwrap_or_else(|| "an exception".to_owned());
                format!("the javascript assertion threw: {message}")
            } else {
                format!("the javascript assertion failed: {error}")
            }
        };
        let globals = ctx.globals();
        globals
            .set("output", output)
            .map_err(|e| describe(&ctx, e))?;
        let context_value = ctx.json_parse(context).map_err(|e| describe(&ctx, e))?;
        globals
            .set("context", context_value)
            .map_err(|e| describe(&ctx, e))?;
        let result: rquickjs::Value = ctx.eval(source).map_err(|e| describe(&ctx, e))?;
        if result.is_undefined() {
            return Err("the javascript assertion returned nothing (undefined)".to_owned());
        }
        let text = ctx
            .json_stringify(result)
            .map_err(|e| describe(&ctx, e))?
            .and_then(|s| s.to_string().ok())
            .ok_or_else(|| "the javascript assertion's result cannot be read".to_owned())?;
        serde_json::from_str(&text)
            .map_err(|e| format!("the javascript assertion's result is not JSON: {e}"))
    })
}

/// Runs `command` with `sh -c`, the request as JSON on stdin.
pub async fn run_exec(
    command: &str,
    threshold: Option<f64>,
    input: &str,
    output: &str,
    vars: &Vars,
) -> Result<Verdict, ScriptError> {
    let request = json!({"output": output, "context": {"prompt": input, "vars": vars}});
    let finished = spawn_and_wait(
        "sh",
        &["-c", command],
        &request.to_string(),
        &format!("command `{command}`"),
    )
    .await?;
    let stdout = String::from_utf8_lossy(&finished.stdout);
    if let Some(Value::Object(result)) = stdout.lines().rev().find_map(|l| {
        serde_json::from_str::<Value>(l.trim())
            .ok()
            .filter(Value::is_object)
    }) {
        return verdict(&Value::Object(result), threshold, "exec");
    }
    let stderr = String::from_utf8_lossy(&finished.stderr);
    let detail = stderr
        .lines()
        .chain(stdout.lines())
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    Ok(match finished.status.code() {
        Some(0) => (true, 1.0, format!("`{command}` exited 0")),
        Some(code) => (
            false,
            0.0,
            format!(
                "`{command}` exited {code}{}",
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                }
            ),
        ),
        None => {
            return Err(ScriptError::Answer(format!(
                "`{command}` was killed by a signal"
            )));
        }
    })
}

/// POSTs `{output, context}` to `url` and reads `{pass, score, reason}` back.
pub async fn run_webhook(
    url: &str,
    threshold: Option<f64>,
    input: &str,
    output: &str,
    vars: &Vars,
) -> Result<Verdict, ScriptError> {
    let client = reqwest::Client::builder()
        .timeout(SCRIPT_TIMEOUT)
        .build()
        .map_err(|source| ScriptError::Webhook {
            url: url.to_owned(),
            source,
        })?;
    let response = client
        .post(url)
        .json(&json!({"output": output, "context": {"prompt": input, "vars": vars}}))
        .send()
        .await
        .map_err(|source| ScriptError::Webhook {
            url: url.to_owned(),
            source,
        })?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|source| ScriptError::Webhook {
            url: url.to_owned(),
            source,
        })?;
    if !status.is_success() {
        return Err(ScriptError::Answer(format!(
            "webhook {url} answered {status}: {}",
            body.chars().take(200).collect::<String>()
        )));
    }
    let value: Value = serde_json::from_str(&body)
        .map_err(|e| format!("webhook {url} did not answer JSON: {e}"))?;
    verdict(&value, threshold, "webhook")
}

/// Reads a script's answer: a boolean, a number, or `{pass, score, reason}`.
pub fn verdict(value: &Value, threshold: Option<f64>, what: &str) -> Result<Verdict, ScriptError> {
    let from_score = |score: f64| match threshold {
        Some(threshold) => score >= threshold,
        None => score > 0.0,
    };
    match value {
        Value::Bool(pass) => Ok((
            *pass,
            if *pass { 1.0 } else { 0.0 },
            format!("{what} returned {pass}"),
        )),
        Value::Number(n) => {
            let score = n.as_f64().unwrap_or(0.0);
            Ok((
                from_score(score),
                score.clamp(0.0, 1.0),
                format!("{what} returned score {score}"),
            ))
        }
        Value::Object(map) => {
            let score = map.get("score").and_then(Value::as_f64);
            let pass = match map
                .get("pass")
                .or_else(|| map.get("pass_"))
                .and_then(Value::as_bool)
            {
                Some(pass) => pass,
                None => from_score(score.ok_or_else(|| {
                    ScriptError::Answer(format!(
                        "{what} returned an object with neither `pass` nor `score`"
                    ))
                })?),
            };
            let reason = map
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let score = score.unwrap_or(if pass { 1.0 } else { 0.0 });
            Ok((
                pass,
                score.clamp(0.0, 1.0),
                format!(
                    "{what}: {}",
                    if reason.is_empty() {
                        format!("score {score}")
                    } else {
                        reason.to_owned()
                    }
                ),
            ))
        }
        other => Err(ScriptError::Answer(format!(
            "{what} returned {other}, expected a boolean, a number or {{pass, score, reason}}"
        ))),
    }
}

/// Runs `program` with `stdin` written to it, within the script timeout.
async fn spawn_and_wait(
    program: &str,
    args: &[&str],
    stdin: &str,
    what: &str,
) -> Result<std::process::Output, ScriptError> {
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ScriptError::Missing {
            what: what.to_owned(),
            program: program.to_owned(),
            source,
        })?;
    if let Some(mut pipe) = child.stdin.take() {
        let _ = pipe.write_all(stdin.as_bytes()).await;
    }
    tokio::time::timeout(SCRIPT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| ScriptError::TimedOut {
            what: what.to_owned(),
            after: SCRIPT_TIMEOUT,
        })?
        .map_err(|source| ScriptError::Wait {
            what: what.to_owned(),
            source,
        })
}

async fn run_process(
    program: &str,
    args: &[&str],
    stdin: &str,
    what: &str,
) -> Result<String, ScriptError> {
    let finished = spawn_and_wait(program, args, stdin, what).await?;
    if !finished.status.success() {
        let stderr = String::from_utf8_lossy(&finished.stderr);
        let last = stderr
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        return Err(ScriptError::Answer(format!("the {what} raised: {last}")));
    }
    Ok(String::from_utf8_lossy(&finished.stdout).into_owned())
}

/// Runs one python assertion: reads `{code | file+function, output, context}` on stdin and
/// prints the result after a marker line.
const PYTHON_RUNNER: &str = r#"
import importlib.util, json, math, re, sys
request = json.load(sys.stdin)
output, context = request["output"], request["context"]
def run():
    if request.get("file"):
        spec = importlib.util.spec_from_file_location("sluice_assertion", request["file"])
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, request.get("function") or "get_assert")(output, context)
    code = request["code"].strip("\n")
    scope = {"json": json, "math": math, "re": re}
    if "\n" in code.strip() or code.lstrip().startswith("return"):
        body = "\n".join("    " + line for line in code.splitlines())
        exec("def __sluice_assertion(output, context):\n" + body, scope)
        return scope["__sluice_assertion"](output, context)
    scope.update(output=output, context=context)
    return eval(code, scope)
print("__SLUICE_ASSERT_RESULT__" + json.dumps(run()))
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn js(code: &str, output: &str) -> Result<Value, String> {
        evaluate_javascript(
            code,
            output,
            r#"{"prompt": "p", "vars": {"city": "Paris"}}"#,
            Duration::from_millis(200),
        )
    }

    #[test]
    fn javascript_runs_expressions_bodies_and_reports_errors() {
        assert_eq!(
            js("output.includes(context.vars.city)", "in Paris").unwrap(),
            json!(true)
        );
        assert_eq!(js("output.length / 10", "12345").unwrap(), json!(0.5));
        let body = "const words = output.split(' ').length;\nreturn {pass: words < 3, score: 1 / words, reason: `${words} words`};";
        assert_eq!(
            js(body, "a b").unwrap(),
            json!({"pass": true, "score": 0.5, "reason": "2 words"})
        );
        let thrown = js("if (output) {\n  throw new Error('nope');\n}", "x").unwrap_err();
        assert!(thrown.contains("threw: nope"), "{thrown}");
        assert!(js("undefinedThing.x", "x").unwrap_err().contains("threw"));
        let syntax = js("output ===", "x").unwrap_err();
        assert!(syntax.contains("threw"), "{syntax}");
        let started = std::time::Instant::now();
        let endless = js("while (true) {}\nreturn 1;", "x").unwrap_err();
        assert!(
            endless.contains("threw") && started.elapsed() < Duration::from_secs(30),
            "{endless}"
        );
        assert!(js("require('fs')", "x").is_err(), "no modules");
    }

    #[test]
    fn script_answers_become_verdicts() {
        assert!(verdict(&json!(true), None, "x").unwrap().0);
        assert!(!verdict(&json!(0.7), Some(0.8), "x").unwrap().0);
        assert!(verdict(&json!(0.7), None, "x").unwrap().0);
        assert!(!verdict(&json!(0), None, "x").unwrap().0);
        let graded = verdict(
            &json!({"pass": false, "score": 0.4, "reason": "too long"}),
            None,
            "x",
        )
        .unwrap();
        assert_eq!(
            (graded.0, graded.1, graded.2.as_str()),
            (false, 0.4, "x: too long")
        );
        assert!(verdict(&json!({"reason": "?"}), None, "x").is_err());
        assert!(verdict(&json!("yes"), None, "x").is_err());
    }
}
