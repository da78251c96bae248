//! The expressions of `pipeline.yaml`, in GitHub Actions' syntax so that a team's conditions
//! read the same here and in their CI: a stage's `if` and the `${{ … }}` substitutions in its
//! command and options.
//!
//! An expression is made of literals (`'text'`, numbers, `true`, `false`, `null`), context
//! paths (`needs.eval.result`, `needs.eval.outputs.pass_rate`, `env.NAME`, `github.ref`,
//! `pipeline.status`), the status functions `success()`, `failure()`, `always()` and
//! `cancelled()`, the functions `contains`, `startsWith` and `endsWith`, comparisons
//! (`==`, `!=`, `<`, `<=`, `>`, `>=`), `!`, `&&`, `||` and parentheses. Comparisons follow
//! GitHub's rules: strings compare without regard to case, and values of different types are
//! compared as numbers. A condition without a status function means `success() && (…)`: it is
//! only considered once every needed stage succeeded.

use std::fmt;

/// A value an expression computes.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value (an unset variable, an output that was not written).
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(f64),
    /// Text.
    String(String),
}

impl Value {
    /// Whether it counts as true in a condition: a non-empty string, a non-zero number, `true`.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Number(n) => *n != 0.0 && !n.is_nan(),
            Value::String(s) => !s.is_empty(),
        }
    }

    fn number(&self) -> f64 {
        match self {
            Value::Null => 0.0,
            Value::Bool(b) => f64::from(u8::from(*b)),
            Value::Number(n) => *n,
            Value::String(s) if s.trim().is_empty() => 0.0,
            Value::String(s) => s.trim().parse().unwrap_or(f64::NAN),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => Ok(()),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::String(s) => f.write_str(s),
        }
    }
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A literal.
    Literal(Value),
    /// A context path such as `needs.eval.result`.
    Path(Vec<String>),
    /// A function call.
    Call(Function, Vec<Expr>),
    /// `!x`.
    Not(Box<Expr>),
    /// `a && b`.
    And(Box<Expr>, Box<Expr>),
    /// `a || b`.
    Or(Box<Expr>, Box<Expr>),
    /// A comparison.
    Compare(Comparison, Box<Expr>, Box<Expr>),
}

/// The functions an expression may call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// Every needed stage succeeded and the pipeline was not stopped.
    Success,
    /// A needed stage failed (or the pipeline already has a failure, in `finally`).
    Failure,
    /// Always true.
    Always,
    /// The pipeline was stopped.
    Cancelled,
    /// `contains(haystack, needle)`, without regard to case.
    Contains,
    /// `startsWith(text, prefix)`, without regard to case.
    StartsWith,
    /// `endsWith(text, suffix)`, without regard to case.
    EndsWith,
}

impl Function {
    const ALL: [(&'static str, Function, usize); 7] = [
        ("success", Function::Success, 0),
        ("failure", Function::Failure, 0),
        ("always", Function::Always, 0),
        ("cancelled", Function::Cancelled, 0),
        ("contains", Function::Contains, 2),
        ("startsWith", Function::StartsWith, 2),
        ("endsWith", Function::EndsWith, 2),
    ];

    fn is_status(self) -> bool {
        matches!(
            self,
            Function::Success | Function::Failure | Function::Always | Function::Cancelled
        )
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
}

/// Why an expression does not parse or does not check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {offset} of `{text}`)")]
pub struct ExprError {
    /// What is wrong.
    pub message: String,
    /// Where, in characters from the start of the expression.
    pub offset: usize,
    /// The expression.
    pub text: String,
}

/// What an expression is evaluated against.
pub trait Scope {
    /// The value at a context path (`Value::Null` when there is none).
    fn lookup(&self, path: &[String]) -> Value;
    /// Whether every needed stage succeeded (or failed as it allows).
    fn needs_ok(&self) -> bool;
    /// Whether the pipeline was stopped (a failure elsewhere, or a signal).
    fn cancelled(&self) -> bool;
}

/// The context roots an expression may read.
const ROOTS: [&str; 5] = ["needs", "env", "github", "pipeline", "matrix"];

impl Expr {
    /// Parses `text` (the `${{ }}` around it, if any, removed).
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        let inner = text.trim();
        let inner = inner
            .strip_prefix("${{")
            .and_then(|t| t.strip_suffix("}}"))
            .unwrap_or(inner);
        let mut parser = Parser {
            tokens: tokenize(inner)?,
            at: 0,
            text: inner,
        };
        let expr = parser.or()?;
        match parser.tokens.get(parser.at) {
            None => Ok(expr),
            Some((offset, token)) => Err(parser.error(*offset, format!("unexpected {token}"))),
        }
    }

    /// Whether it calls a status function (then it replaces the implicit `success()`).
    pub fn has_status_function(&self) -> bool {
        match self {
            Expr::Literal(_) | Expr::Path(_) => false,
            Expr::Call(function, args) => {
                function.is_status() || args.iter().any(Expr::has_status_function)
            }
            Expr::Not(e) => e.has_status_function(),
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Compare(_, a, b) => {
                a.has_status_function() || b.has_status_function()
            }
        }
    }

    /// Checks the context paths it reads: a known root, and `needs.S` only for a stage `S` in
    /// `needs`, read as `needs.S.result` or `needs.S.outputs.NAME`. One message per problem.
    pub fn check(&self, needs: &[String]) -> Vec<String> {
        let mut problems = Vec::new();
        self.paths(&mut |path| {
            let root = path[0].as_str();
            if !ROOTS.contains(&root) {
                let hint = sluice_config::did_you_mean(root, ROOTS)
                    .map(|n| format!("; did you mean `{n}`?"))
                    .unwrap_or_default();
                problems.push(format!(
                    "unknown context `{root}`: expected one of {}{hint}",
                    ROOTS.join(", ")
                ));
                return;
            }
            let shape_ok = match root {
                "needs" => match path.get(1) {
                    None => false,
                    Some(stage) if !needs.contains(stage) => {
                        problems.push(format!(
                            "`needs.{stage}`: `{stage}` is not in this stage's `needs`"
                        ));
                        return;
                    }
                    Some(_) => matches!(
                        (path.get(2).map(String::as_str), path.len()),
                        (Some("result"), 3) | (Some("outputs"), 4)
                    ),
                },
                "pipeline" => path.len() == 2 && path[1] == "status",
                _ => path.len() == 2,
            };
            if !shape_ok {
                let expected = match root {
                    "needs" => "`needs.STAGE.result` or `needs.STAGE.outputs.NAME`",
                    "pipeline" => "`pipeline.status`",
                    "env" => "`env.NAME`",
                    "matrix" => "`matrix.NAME`",
                    _ => "`github.NAME`",
                };
                problems.push(format!("`{}`: expected {expected}", path.join(".")));
            }
        });
        problems
    }

    /// Calls `visit` with every context path it reads.
    pub fn paths(&self, visit: &mut impl FnMut(&[String])) {
        match self {
            Expr::Literal(_) => {}
            Expr::Path(path) => visit(path),
            Expr::Call(_, args) => args.iter().for_each(|a| a.paths(visit)),
            Expr::Not(e) => e.paths(visit),
            Expr::And(a, b) | Expr::Or(a, b) | Expr::Compare(_, a, b) => {
                a.paths(visit);
                b.paths(visit);
            }
        }
    }

    /// Evaluates it.
    pub fn eval(&self, scope: &dyn Scope) -> Value {
        match self {
            Expr::Literal(value) => value.clone(),
            Expr::Path(path) => scope.lookup(path),
            Expr::Not(e) => Value::Bool(!e.eval(scope).truthy()),
            // As in GitHub Actions, `&&` and `||` give one of their operands.
            Expr::And(a, b) => {
                let left = a.eval(scope);
                if left.truthy() { b.eval(scope) } else { left }
            }
            Expr::Or(a, b) => {
                let left = a.eval(scope);
                if left.truthy() { left } else { b.eval(scope) }
            }
            Expr::Compare(op, a, b) => Value::Bool(compare(*op, &a.eval(scope), &b.eval(scope))),
            Expr::Call(function, args) => {
                let text = |i: usize| args[i].eval(scope).to_string().to_lowercase();
                Value::Bool(match function {
                    Function::Success => scope.needs_ok() && !scope.cancelled(),
                    Function::Failure => !scope.needs_ok(),
                    Function::Always => true,
                    Function::Cancelled => scope.cancelled(),
                    Function::Contains => text(0).contains(&text(1)),
                    Function::StartsWith => text(0).starts_with(&text(1)),
                    Function::EndsWith => text(0).ends_with(&text(1)),
                })
            }
        }
    }

    /// Whether a stage with this condition (`None`: none) runs.
    pub fn decides(condition: Option<&Expr>, scope: &dyn Scope) -> bool {
        match condition {
            None => scope.needs_ok() && !scope.cancelled(),
            Some(expr) if expr.has_status_function() => expr.eval(scope).truthy(),
            Some(expr) => scope.needs_ok() && !scope.cancelled() && expr.eval(scope).truthy(),
        }
    }
}

fn compare(op: Comparison, a: &Value, b: &Value) -> bool {
    use std::cmp::Ordering;
    let ordering = match (a, b) {
        (Value::String(x), Value::String(y)) => Some(x.to_lowercase().cmp(&y.to_lowercase())),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => a.number().partial_cmp(&b.number()),
    };
    match (op, ordering) {
        (Comparison::NotEqual, None) => true,
        (_, None) => false,
        (Comparison::Equal, Some(o)) => o == Ordering::Equal,
        (Comparison::NotEqual, Some(o)) => o != Ordering::Equal,
        (Comparison::Less, Some(o)) => o == Ordering::Less,
        (Comparison::LessOrEqual, Some(o)) => o != Ordering::Greater,
        (Comparison::Greater, Some(o)) => o == Ordering::Greater,
        (Comparison::GreaterOrEqual, Some(o)) => o != Ordering::Less,
    }
}

/// A piece of a string with `${{ … }}` substitutions.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Text kept as it is.
    Text(String),
    /// An expression whose value is put in.
    Expr(Expr),
}

/// A string with `${{ … }}` substitutions, parsed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template(pub Vec<Part>);

impl Template {
    /// Parses the substitutions in `text`.
    pub fn parse(text: &str) -> Result<Template, ExprError> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("${{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let body = &rest[start + 3..];
            let Some(end) = body.find("}}") else {
                return Err(ExprError {
                    message: "`${{` without its `}}`".to_owned(),
                    offset: text.len() - rest.len() + start,
                    text: text.to_owned(),
                });
            };
            parts.push(Part::Expr(Expr::parse(&body[..end])?));
            rest = &body[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template(parts))
    }

    /// The text with `${{ … }}` where each expression is: what a check of its shape reads.
    pub fn written(&self) -> String {
        self.0
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.clone(),
                Part::Expr(_) => "${{ … }}".to_owned(),
            })
            .collect()
    }

    /// The expressions in it.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.0.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            Part::Text(_) => None,
        })
    }

    /// The text with each expression's value put in; `quote` wraps each value (a shell
    /// command quotes what is not a plain word, so that a value cannot become a command).
    pub fn render(&self, scope: &dyn Scope, quote: fn(&str) -> String) -> String {
        self.0
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.clone(),
                Part::Expr(expr) => quote(&expr.eval(scope).to_string()),
            })
            .collect()
    }
}

/// `text` as one shell word: kept as it is when it is made of safe characters only,
/// otherwise in single quotes.
pub fn shell_word(text: &str) -> String {
    let safe = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    if safe {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Number(f64),
    Op(&'static str),
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(name) => write!(f, "`{name}`"),
            Token::Str(text) => write!(f, "'{text}'"),
            Token::Number(n) => write!(f, "{n}"),
            Token::Op(op) => write!(f, "`{op}`"),
        }
    }
}

const OPERATORS: [&str; 13] = [
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", ",", ".",
];

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ExprError> {
    let error = |offset: usize, message: String| ExprError {
        message,
        offset,
        text: text.to_owned(),
    };
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (offset, c) = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            // A quote inside a string is written twice, as in GitHub Actions.
            let mut value = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err(error(offset, "a string without its closing `'`".into())),
                    Some((_, '\'')) if chars.get(i + 1).is_some_and(|(_, c)| *c == '\'') => {
                        value.push('\'');
                        i += 2;
                    }
                    Some((_, '\'')) => {
                        i += 1;
                        break;
                    }
                    Some((_, c)) => {
                        value.push(*c);
                        i += 1;
                    }
                }
            }
            tokens.push((offset, Token::Str(value)));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(|(_, d)| d.is_ascii_digit()))
        {
            let start = i;
            i += 1;
            while chars
                .get(i)
                .is_some_and(|(_, d)| d.is_ascii_alphanumeric() || *d == '.')
            {
                i += 1;
            }
            let end = chars.get(i).map_or(text.len(), |(o, _)| *o);
            let literal = &text[offset..end];
            let number = literal
                .parse::<f64>()
                .map_err(|_| error(chars[start].0, format!("`{literal}` is not a number")))?;
            tokens.push((offset, Token::Number(number)));
        } else if c.is_alphabetic() || c == '_' {
            i += 1;
            while chars
                .get(i)
                .is_some_and(|(_, d)| d.is_alphanumeric() || *d == '_' || *d == '-')
            {
                i += 1;
            }
            let end = chars.get(i).map_or(text.len(), |(o, _)| *o);
            tokens.push((offset, Token::Ident(text[offset..end].to_owned())));
        } else if let Some(op) = OPERATORS.iter().find(|op| text[offset..].starts_with(**op)) {
            i += op.len();
            tokens.push((offset, Token::Op(op)));
        } else {
            return Err(error(offset, format!("unexpected character `{c}`")));
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<(usize, Token)>,
    at: usize,
    text: &'a str,
}

impl Parser<'_> {
    fn error(&self, offset: usize, message: String) -> ExprError {
        ExprError {
            message,
            offset,
            text: self.text.to_owned(),
        }
    }

    fn peek_op(&self, op: &str) -> bool {
        matches!(self.tokens.get(self.at), Some((_, Token::Op(o))) if *o == op)
    }

    fn expect_op(&mut self, op: &str) -> Result<(), ExprError> {
        if self.peek_op(op) {
            self.at += 1;
            return Ok(());
        }
        let (offset, found) = match self.tokens.get(self.at) {
            Some((offset, token)) => (*offset, token.to_string()),
            None => (self.text.len(), "the end".to_owned()),
        };
        Err(self.error(offset, format!("expected `{op}`, found {found}")))
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.and()?;
        while self.peek_op("||") {
            self.at += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.comparison()?;
        while self.peek_op("&&") {
            self.at += 1;
            left = Expr::And(Box::new(left), Box::new(self.comparison()?));
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Expr, ExprError> {
        let left = self.unary()?;
        let op = match self.tokens.get(self.at) {
            Some((_, Token::Op("=="))) => Comparison::Equal,
            Some((_, Token::Op("!="))) => Comparison::NotEqual,
            Some((_, Token::Op("<"))) => Comparison::Less,
            Some((_, Token::Op("<="))) => Comparison::LessOrEqual,
            Some((_, Token::Op(">"))) => Comparison::Greater,
            Some((_, Token::Op(">="))) => Comparison::GreaterOrEqual,
            _ => return Ok(left),
        };
        self.at += 1;
        let right = self.unary()?;
        Ok(Expr::Compare(op, Box::new(left), Box::new(right)))
    }

    fn unary(&mut self) -> Result<Expr, ExprError> {
        if self.peek_op("!") {
            self.at += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ExprError> {
        let Some((offset, token)) = self.tokens.get(self.at).cloned() else {
            return Err(self.error(self.text.len(), "expected a value, found the end".into()));
        };
        self.at += 1;
        match token {
            Token::Str(text) => Ok(Expr::Literal(Value::String(text))),
            Token::Number(n) => Ok(Expr::Literal(Value::Number(n))),
            Token::Op("(") => {
                let inner = self.or()?;
                self.expect_op(")")?;
                Ok(inner)
            }
            Token::Op(op) => Err(self.error(offset, format!("expected a value, found `{op}`"))),
            Token::Ident(name) => match name.as_str() {
                "true" => Ok(Expr::Literal(Value::Bool(true))),
                "false" => Ok(Expr::Literal(Value::Bool(false))),
                "null" => Ok(Expr::Literal(Value::Null)),
                _ if self.peek_op("(") => self.call(offset, &name),
                _ => {
                    let mut path = vec![name];
                    while self.peek_op(".") {
                        self.at += 1;
                        match self.tokens.get(self.at).cloned() {
                            Some((_, Token::Ident(part))) => path.push(part),
                            Some((_, Token::Number(n))) if n.fract() == 0.0 => {
                                path.push(format!("{n}"));
                            }
                            other => {
                                let at = other.map_or(self.text.len(), |(o, _)| o);
                                return Err(self.error(at, "expected a name after `.`".into()));
                            }
                        }
                        self.at += 1;
                    }
                    Ok(Expr::Path(path))
                }
            },
        }
    }

    fn call(&mut self, offset: usize, name: &str) -> Result<Expr, ExprError> {
        let Some((_, function, arity)) = Function::ALL.iter().find(|(n, _, _)| *n == name) else {
            let names = Function::ALL.iter().map(|(n, _, _)| *n);
            let hint = sluice_config::did_you_mean(name, names)
                .map(|n| format!("; did you mean `{n}`?"))
                .unwrap_or_default();
            return Err(self.error(offset, format!("unknown function `{name}`{hint}")));
        };
        self.expect_op("(")?;
        let mut args = Vec::new();
        if !self.peek_op(")") {
            args.push(self.or()?);
            while self.peek_op(",") {
                self.at += 1;
                args.push(self.or()?);
            }
        }
        self.expect_op(")")?;
        if args.len() != *arity {
            return Err(self.error(
                offset,
                format!("`{name}` takes {arity} argument(s), not {}", args.len()),
            ));
        }
        Ok(Expr::Call(*function, args))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    struct Fixed {
        values: BTreeMap<String, Value>,
        needs_ok: bool,
        cancelled: bool,
    }

    impl Scope for Fixed {
        fn lookup(&self, path: &[String]) -> Value {
            self.values
                .get(&path.join("."))
                .cloned()
                .unwrap_or(Value::Null)
        }
        fn needs_ok(&self) -> bool {
            self.needs_ok
        }
        fn cancelled(&self) -> bool {
            self.cancelled
        }
    }

    fn scope(needs_ok: bool) -> Fixed {
        Fixed {
            values: BTreeMap::from([
                ("github.ref".into(), Value::String("refs/heads/main".into())),
                ("needs.eval.result".into(), Value::String("success".into())),
                (
                    "needs.eval.outputs.pass_rate".into(),
                    Value::String("0.93".into()),
                ),
            ]),
            needs_ok,
            cancelled: false,
        }
    }

    fn holds(text: &str, needs_ok: bool) -> bool {
        Expr::decides(Some(&Expr::parse(text).unwrap()), &scope(needs_ok))
    }

    #[test]
    fn conditions_evaluate_as_in_github_actions() {
        assert!(holds("github.ref == 'refs/heads/main'", true));
        assert!(holds("${{ github.ref == 'REFS/HEADS/MAIN' }}", true));
        assert!(!holds("github.ref == 'refs/heads/main'", false));
        assert!(holds("always() && github.ref != 'x'", false));
        assert!(holds("failure()", false) && !holds("failure()", true));
        assert!(holds("needs.eval.outputs.pass_rate >= 0.9", true));
        assert!(!holds("needs.eval.outputs.pass_rate > 0.95", true));
        assert!(holds(
            "startsWith(github.ref, 'refs/heads/') && !contains(github.ref, 'tmp')",
            true
        ));
        assert!(holds("(false || needs.eval.result == 'success')", true));
        assert!(!holds("env.UNSET", true));
        assert!(holds("'it''s' == 'IT''S'", true));
    }

    #[test]
    fn bad_expressions_say_where_and_what() {
        let error = Expr::parse("github.ref == ").unwrap_err();
        assert!(
            error
                .to_string()
                .contains("expected a value, found the end")
        );
        let error = Expr::parse("sucess()").unwrap_err();
        assert!(error.message.contains("did you mean `success`?"), "{error}");
        let error = Expr::parse("contains(github.ref)").unwrap_err();
        assert!(error.message.contains("takes 2 argument(s), not 1"));
        let error = Expr::parse("a == 'open").unwrap_err();
        assert_eq!(error.offset, 5);
        let error = Expr::parse("a = b").unwrap_err();
        assert!(
            error.message.contains("unexpected character `=`"),
            "{error}"
        );
        let expr =
            Expr::parse("needs.lint.result == 'success' && githb.ref && needs.eval.x").unwrap();
        let problems = expr.check(&["eval".to_owned()]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("`lint` is not in this stage's `needs`"));
        assert!(problems[1].contains("did you mean `github`?"));
        assert!(problems[2].contains("expected `needs.STAGE.result`"));
    }

    #[test]
    fn templates_substitute_and_quote_for_the_shell() {
        let template = Template::parse("./notify.sh ${{ github.ref }} ${{ env.X }}!").unwrap();
        assert_eq!(
            template.render(&scope(true), shell_word),
            "./notify.sh refs/heads/main ''!"
        );
        assert_eq!(shell_word("a b; rm -rf /"), "'a b; rm -rf /'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert!(Template::parse("x ${{ github.ref").is_err());
    }
}
