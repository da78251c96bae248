//! `{{ var }}` templating: the part of Nunjucks that eval suites use for prompts, provider
//! bodies and assertion values.
//!
//! Substitutions (`{{ name }}`, `{{ doc.title }}`, `{{ items[0] }}`, filters `upper`, `lower`,
//! `trim`, `dump`, `length`) are rendered by a small, fast renderer: strings as-is, other values
//! as JSON. Templates with block tags (`{% for %}`, `{% if %}`, `{% set %}` …) go through a
//! Jinja engine, Nunjucks's close relative, with undefined variables as errors and Nunjucks's
//! `dump` filter added.

use std::collections::BTreeMap;

use serde_json::Value;

/// Variables by name.
pub type Vars = BTreeMap<String, Value>;

/// A template problem, naming the piece of the template at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{{ var }}` with no value.
    #[error("`{{{{ {0} }}}}` has no value: define `{0}` in the test's or defaultTest's `vars`")]
    Missing(String),
    /// A filter that is not supported.
    #[error("unknown template filter `{0}` (supported: upper, lower, trim, dump, length)")]
    UnknownFilter(String),
    /// `{{` without `}}`.
    #[error("unterminated `{{{{` in template")]
    Unterminated,
    /// A template with block tags that does not parse or render.
    #[error("template error: {0}")]
    Blocks(String),
}

/// Renders `template` with `vars`.
pub fn render(template: &str, vars: &Vars) -> Result<String, TemplateError> {
    if template.contains("{%") {
        return render_blocks(template, vars);
    }
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or(TemplateError::Unterminated)?;
        out.push_str(&evaluate(after[..end].trim(), vars)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Renders a template with block tags through the Jinja engine.
fn render_blocks(template: &str, vars: &Vars) -> Result<String, TemplateError> {
    thread_local! {
        static ENGINE: minijinja::Environment<'static> = {
            let mut engine = minijinja::Environment::new();
            engine.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
            engine.add_filter("dump", |value: minijinja::Value| -> Result<String, minijinja::Error> {
                serde_json::to_string(&value).map_err(|e| minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, e.to_string()))
            });
            engine
        };
    }
    ENGINE.with(|engine| {
        engine
            .render_str(template, minijinja::value::Serde(vars))
            .map_err(|error| {
                let mut message = error.to_string();
                if let Some(detail) = error.detail() {
                    message = format!("{message}: {detail}");
                }
                TemplateError::Blocks(message)
            })
    })
}

/// Renders every string inside a JSON value (assertion values, request bodies).
pub fn render_value(value: &Value, vars: &Vars) -> Result<Value, TemplateError> {
    Ok(match value {
        Value::String(text) if text.contains("{{") || text.contains("{%") => {
            Value::String(render(text, vars)?)
        }
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|v| render_value(v, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), render_value(v, vars)?)))
                .collect::<Result<_, TemplateError>>()?,
        ),
        other => other.clone(),
    })
}

/// The variable names a template refers to (for validation before running).
pub fn references(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        let expression = after[..end].split('|').next().unwrap_or_default().trim();
        let root = expression
            .split(['.', '['])
            .next()
            .unwrap_or_default()
            .to_owned();
        if !root.is_empty() && !names.contains(&root) {
            names.push(root);
        }
        rest = &after[end + 2..];
    }
    names
}

fn evaluate(expression: &str, vars: &Vars) -> Result<String, TemplateError> {
    let mut parts = expression.split('|').map(str::trim);
    let path = parts.next().unwrap_or_default();
    let mut value = lookup(path, vars).ok_or_else(|| TemplateError::Missing(path.to_owned()))?;
    for filter in parts {
        value = match filter {
            "upper" => Value::String(text(&value).to_uppercase()),
            "lower" => Value::String(text(&value).to_lowercase()),
            "trim" => Value::String(text(&value).trim().to_owned()),
            "dump" => Value::String(value.to_string()),
            "length" => Value::from(match &value {
                Value::Array(items) => items.len(),
                Value::Object(map) => map.len(),
                other => text(other).chars().count(),
            }),
            other => return Err(TemplateError::UnknownFilter(other.to_owned())),
        };
    }
    Ok(text(&value))
}

/// A value as template text: strings as-is, everything else as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The value at a path such as `data.items[0].text` inside `value`.
pub fn lookup_path(value: &Value, path: &str) -> Option<Value> {
    let mut current = value.clone();
    for segment in path.split('.') {
        let (key, indexes) = split_indexes(segment)?;
        if !key.is_empty() {
            current = current.get(key)?.clone();
        }
        for index in indexes {
            current = current.get(index)?.clone();
        }
    }
    Some(current)
}

fn lookup(path: &str, vars: &Vars) -> Option<Value> {
    let mut segments = path.split('.');
    let first = segments.next()?;
    let (name, mut indexes) = split_indexes(first)?;
    let mut value = vars.get(name)?.clone();
    loop {
        for index in indexes.drain(..) {
            value = value.get(index)?.clone();
        }
        let Some(segment) = segments.next() else {
            break;
        };
        let (key, more) = split_indexes(segment)?;
        value = value.get(key)?.clone();
        indexes = more;
    }
    Some(value)
}

/// `items[0][1]` → (`items`, [0, 1]).
fn split_indexes(segment: &str) -> Option<(&str, Vec<usize>)> {
    let Some(open) = segment.find('[') else {
        return Some((segment, Vec::new()));
    };
    let name = &segment[..open];
    let mut indexes = Vec::new();
    for piece in segment[open..].split('[').skip(1) {
        indexes.push(piece.strip_suffix(']')?.trim().parse().ok()?);
    }
    Some((name, indexes))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vars() -> Vars {
        Vars::from([
            ("city".to_owned(), json!("Paris")),
            ("n".to_owned(), json!(3)),
            (
                "doc".to_owned(),
                json!({"title": " Hello ", "tags": ["a", "b"]}),
            ),
        ])
    }

    #[test]
    fn substitutions_paths_and_filters() {
        assert_eq!(
            render("Capital: {{city}}!", &vars()).unwrap(),
            "Capital: Paris!"
        );
        assert_eq!(
            render("{{ city | upper }} {{n}}", &vars()).unwrap(),
            "PARIS 3"
        );
        assert_eq!(
            render("[{{ doc.title | trim | lower }}]", &vars()).unwrap(),
            "[hello]"
        );
        assert_eq!(
            render("{{ doc.tags[1] }} {{ doc.tags | length }}", &vars()).unwrap(),
            "b 2"
        );
        assert_eq!(
            render("{{ doc.tags | dump }}", &vars()).unwrap(),
            r#"["a","b"]"#
        );
        assert_eq!(render("no vars", &vars()).unwrap(), "no vars");
    }

    #[test]
    fn problems_are_named() {
        assert_eq!(
            render("{{ country }}", &vars()),
            Err(TemplateError::Missing("country".into()))
        );
        assert_eq!(
            render("{{ city | shout }}", &vars()),
            Err(TemplateError::UnknownFilter("shout".into()))
        );
        assert_eq!(render("{{ city", &vars()), Err(TemplateError::Unterminated));
        assert!(matches!(
            render("{% for x in nope %}{{ x }}{% endfor %}", &vars()),
            Err(TemplateError::Blocks(_))
        ));
        assert!(matches!(
            render("{% if %}", &vars()),
            Err(TemplateError::Blocks(_))
        ));
    }

    #[test]
    fn loops_conditionals_and_filters_render_like_nunjucks() {
        let rendered = render(
            "{% for tag in doc.tags %}[{{ tag | upper }}]{% endfor %}{% if n > 2 %} many{% else %} few{% endif %}",
            &vars(),
        );
        assert_eq!(rendered.unwrap(), "[A][B] many");
        assert_eq!(
            render("{% set t = doc.tags | dump %}{{ t }}", &vars()).unwrap(),
            r#"["a","b"]"#
        );
    }

    #[test]
    fn references_are_listed_once() {
        assert_eq!(
            references("{{a}} {{ b.c | upper }} {{a}} {{ d[0] }}"),
            vec!["a", "b", "d"]
        );
    }
}
