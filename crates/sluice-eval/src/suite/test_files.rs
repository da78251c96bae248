//! Test files a suite loads (YAML, JSONL, CSV with `__expected` shorthand), each problem
//! reported at its own `file:line`.

use super::*;

pub(super) fn load_yaml_tests(
    name: &str,
    text: &str,
    env: &dyn EnvSource,
) -> Result<Vec<(RawTest, FieldPath, String)>, Diagnostics> {
    let mut document = Document::parse(name, text, env)?;
    document
        .root_mut()
        .items_mut()
        .iter_mut()
        .for_each(desugar_test);
    let tests: Vec<RawTest> = document.deserialize()?;
    Ok(tests
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, FieldPath::root().index(i), format!("{name}: [{i}]")))
        .collect())
}

pub(super) fn load_jsonl(
    name: &str,
    text: &str,
    env: &dyn EnvSource,
) -> Result<Vec<(RawTest, FieldPath, String)>, Diagnostics> {
    let mut tests = Vec::new();
    let mut errors = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_number = index + 1;
        let parsed = Document::parse(name, line, env).and_then(|mut doc| {
            desugar_test(doc.root_mut());
            doc.deserialize::<RawTest>()
        });
        match parsed {
            Ok(test) => tests.push((test, FieldPath::root(), format!("{name}:{line_number}"))),
            Err(diagnostics) => errors.extend(diagnostics.errors.into_iter().map(|mut d| {
                d.location = Some(Location {
                    line: line_number,
                    column: d.location.map_or(1, |l| l.column),
                });
                d
            })),
        }
    }
    if errors.is_empty() {
        Ok(tests)
    } else {
        Err(Diagnostics::in_file(name, errors))
    }
}

/// CSV tests: each column is a var, except promptfoo's `__expected…`, `__description`,
/// `__metric` and `__threshold` columns.
pub(super) fn load_csv(
    name: &str,
    text: &str,
) -> Result<Vec<(RawTest, FieldPath, String)>, Diagnostics> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let at = |line: usize, column: usize| Location { line, column };
    let headers = reader
        .headers()
        .map_err(|e| {
            Diagnostics::in_file(
                name,
                vec![Diagnostic::new(
                    at(1, 1),
                    FieldPath::root(),
                    format!("invalid CSV header: {e}"),
                )],
            )
        })?
        .clone();
    let mut tests = Vec::new();
    let mut errors = Vec::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(error) => {
                let line = error.position().map_or(0, |p| p.line() as usize);
                let message = match error.kind() {
                    csv::ErrorKind::UnequalLengths {
                        expected_len, len, ..
                    } => {
                        format!(
                            "row has {len} fields, expected {expected_len} (as many as the header)"
                        )
                    }
                    _ => format!("invalid CSV: {error}"),
                };
                errors.push(Diagnostic::new(at(line, 1), FieldPath::root(), message));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        let mut test = RawTest::default();
        let mut metric = None;
        let mut expected = Vec::new();
        for (column, (header, value)) in headers.iter().zip(record.iter()).enumerate() {
            let field = FieldPath::root().key(header);
            match header {
                h if h == "__expected"
                    || h.starts_with("__expected")
                        && h[10..].chars().all(|c| c.is_ascii_digit()) =>
                {
                    if !value.trim().is_empty() {
                        expected.push((value.to_owned(), column));
                    }
                }
                "__description" => test.description = Some(value.to_owned()),
                "__metric" => metric = Some(value.to_owned()),
                "__threshold" => match value.trim().parse::<f64>() {
                    Ok(threshold) => test.threshold = Some(threshold),
                    Err(_) if value.trim().is_empty() => {}
                    Err(_) => errors.push(Diagnostic::new(
                        at(line, column + 1),
                        field,
                        format!("expected a number, found {value:?}"),
                    )),
                },
                h if h.starts_with("__") => {
                    errors.push(Diagnostic::new(at(line, column + 1), field, format!("the CSV column `{h}` is not supported (supported: __expected, __expectedN, __description, __metric, __threshold)")));
                }
                _ => {
                    test.vars
                        .insert(header.to_owned(), Value::String(value.to_owned()));
                }
            }
        }
        for (text, column) in expected {
            match shorthand_assertion(&text) {
                Ok(mut assertion) => {
                    assertion.metric = metric.clone();
                    match compile_assertion(&assertion) {
                        Ok(_) => test.assert.push(assertion),
                        Err((_, message)) => errors.push(Diagnostic::new(
                            at(line, column + 1),
                            FieldPath::root().key(&headers[column]),
                            message,
                        )),
                    }
                }
                Err(message) => errors.push(Diagnostic::new(
                    at(line, column + 1),
                    FieldPath::root().key(&headers[column]),
                    message,
                )),
            }
        }
        tests.push((test, FieldPath::root(), format!("{name}:{line}")));
    }
    if errors.is_empty() {
        Ok(tests)
    } else {
        Err(Diagnostics::in_file(name, errors))
    }
}

/// promptfoo's `__expected` shorthand: `type:value`, `type(threshold):value`, `not-type:value`,
/// or a bare value meaning `equals`.
pub(super) fn shorthand_assertion(text: &str) -> Result<RawAssertion, String> {
    let plain = |kind: &str, value: Option<Value>, threshold: Option<f64>| RawAssertion {
        kind: kind.to_owned(),
        value,
        threshold,
        weight: None,
        metric: None,
        assert: None,
        provider: None,
        transform: None,
        rubric_prompt: None,
        context_transform: None,
        config: None,
    };
    if let Some(rubric) = text.strip_prefix("grade:") {
        return Ok(plain(
            "llm-rubric",
            Some(Value::String(rubric.trim().to_owned())),
            None,
        ));
    }
    if let Some(code) = text.strip_prefix("fn:") {
        return Ok(plain(
            "javascript",
            Some(Value::String(code.trim().to_owned())),
            None,
        ));
    }
    if let Some((head, value)) = text.split_once(':') {
        let (name, threshold) = match head.split_once('(') {
            Some((name, rest)) => match rest
                .strip_suffix(')')
                .and_then(|t| t.trim().parse::<f64>().ok())
            {
                Some(threshold) => (name, Some(threshold)),
                None => (head, None),
            },
            None => (head, None),
        };
        let base = name.strip_prefix("not-").unwrap_or(name);
        if supported_types().any(|t| t == base) || UNSUPPORTED_TYPES.contains(&base) {
            let value = if value.is_empty() {
                None
            } else {
                Some(Value::String(value.to_owned()))
            };
            return Ok(plain(name, value, threshold));
        }
    }
    Ok(plain("equals", Some(Value::String(text.to_owned())), None))
}
