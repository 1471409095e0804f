//! A self-contained evaluator for CEL, the Common Expression Language of the expressions a
//! compiled KFP pipeline carries.
//!
//! * `triggerPolicy.condition` (from `dsl.If`/`Elif`/`Else`), for example
//!   `int(inputs.parameter_values['pipelinechannel--total-Output']) > 10`;
//! * `parameterExpressionSelector` (a loop over dicts, `item.field`), for example
//!   `parseJson(string_value)["a"]`.
//!
//! The KFP backend evaluates both with cel-go (`backend/src/v2/expression`). This module
//! reproduces that: a lexer, a parser (with cel-go's macros), cel-go's compile-time checks
//! (operand types that can never match, unknown functions, and, through
//! [`Program::check_declared`], names the environment does not declare — so
//! `false && 'a' + 1 == 1` is rejected as cel-go rejects it, not short-circuited), and a
//! tree-walking evaluator with CEL's runtime semantics. Nothing is ever substituted into text
//! or handed to another interpreter.
//!
//! # What the backend binds
//!
//! * Conditions ([`eval_condition`]): the environment is the `ExecutorInput` message, so the
//!   variables are `inputs` and `outputs`. `inputs.parameter_values` maps each input parameter
//!   of the task to a protobuf `Value`: every number is a `double` (an integer output `30`
//!   arrives as `30.0`, hence the `int(...)` the compiler wraps around NUMBER_INTEGER operands),
//!   lists and structs become CEL lists and maps. `inputs.artifacts` and `outputs` exist but
//!   the KFP SDK never generates conditions on them; they are bound empty here.
//! * Selectors ([`eval_selector`]): the environment is the protobuf `Value` message. The one
//!   field that is set is bound (`string_value`, `number_value` (double), `bool_value`,
//!   `struct_value` (map), `list_value` (list) or `null_value`), and `string_value` is *always*
//!   bound to the value's text ([`pb_value_to_text`]: compact JSON for lists and structs). The
//!   other fields are declared but unset: using them is an error. `parseJson(string) -> dyn`
//!   is the one extra function (numbers in the parsed JSON are doubles too).
//!
//! # Language
//!
//! Literals (`int` decimal and hex, `uint` with `u`, `double` with fraction or exponent,
//! strings in all quote styles with every CEL escape, raw strings, bytes, `true`, `false`,
//! `null`), lists, maps, `a.b`, `a[k]`, unary `!` `-`, `* / %`, `+ -` (checked integer
//! arithmetic, string/bytes/list concatenation), `< <= > >= == !=` (heterogeneous numeric
//! equality and ordering across `int`, `uint`, `double` at runtime), `in`, `&&` `||` with
//! CEL's commutative error absorption, `?:`; the functions `size`, `int`, `uint`, `double`,
//! `string`, `bool`, `bytes`, `dyn`, `type`, `contains`, `startsWith`, `endsWith`, `parseJson`;
//! the macros `has`, `all`, `exists`, `exists_one`, `map`, `filter`; type values (`type(x) == int`).
//!
//! Not implemented (each is reported as [`CelError::Unsupported`] when the expression is
//! parsed): `matches()` (it needs an RE2 engine), timestamps and durations, and protobuf
//! message construction (`Foo{a: 1}`). None of them can appear in what the KFP SDK compiles.
//!
//! Hostile expressions cannot exhaust the stack or the machine: at most
//! [`MAX_EXPRESSION_CHARS`] characters, [`MAX_NESTING_DEPTH`] levels of nesting (chains of
//! `&&`/`||` do not count, as in cel-go which balances them), [`MAX_EVAL_COST`] evaluation steps.
//!
//! Known, deliberate differences from cel-go, none of which concerns what the KFP SDK emits:
//! the `ExecutorInput` messages are modelled as maps, so an undefined field (`inputs.foo`) is a
//! runtime `no such key` rather than a compile error and `has(inputs.parameter_values)` is
//! always true; a `\u` escape may be a UTF-16 surrogate pair (as the CEL specification allows);
//! `double('0x1p3')` (Go's hexadecimal floats) is not accepted; a selector whose result is a
//! list or map literal or `null` yields JSON where cel-go's conversion can fail; the cost limit.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde_json::Value as Json;

use crate::error::CelError;

/// The longest expression accepted, in characters (cel-go's default code point limit).
pub const MAX_EXPRESSION_CHARS: usize = 100_000;

/// The deepest nesting of sub-expressions accepted (parentheses, operands, arguments, literals).
pub const MAX_NESTING_DEPTH: usize = 100;

/// The most evaluation steps one evaluation may take (one per sub-expression evaluated and per
/// comprehension iteration, plus one per 16 characters or elements a concatenation produces).
pub const MAX_EVAL_COST: u64 = 1_000_000;

// ---------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------

/// The runtime type of a [`CelValue`], itself a CEL value (`type(1) == int`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CelType {
    /// `null_type`, the type of `null`.
    Null,
    /// `bool`.
    Bool,
    /// `int`, 64-bit signed.
    Int,
    /// `uint`, 64-bit unsigned.
    Uint,
    /// `double`, 64-bit IEEE float.
    Double,
    /// `string`, a sequence of Unicode code points.
    String,
    /// `bytes`.
    Bytes,
    /// `list`.
    List,
    /// `map`.
    Map,
    /// `type`, the type of types.
    Type,
}

impl CelType {
    /// The type's CEL name (`int`, `null_type`, …).
    pub fn name(self) -> &'static str {
        match self {
            CelType::Null => "null_type",
            CelType::Bool => "bool",
            CelType::Int => "int",
            CelType::Uint => "uint",
            CelType::Double => "double",
            CelType::String => "string",
            CelType::Bytes => "bytes",
            CelType::List => "list",
            CelType::Map => "map",
            CelType::Type => "type",
        }
    }

    fn from_name(name: &str) -> Option<CelType> {
        Some(match name {
            "null_type" => CelType::Null,
            "bool" => CelType::Bool,
            "int" => CelType::Int,
            "uint" => CelType::Uint,
            "double" => CelType::Double,
            "string" => CelType::String,
            "bytes" => CelType::Bytes,
            "list" => CelType::List,
            "map" => CelType::Map,
            "type" => CelType::Type,
            _ => return None,
        })
    }
}

impl fmt::Display for CelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A CEL value.
///
/// The derived `PartialEq` is structural (`Int(1) != Double(1.0)`, `NaN != NaN`); CEL's own
/// `==` (heterogeneous numeric equality) is what [`Program::eval`] applies.
#[derive(Debug, Clone, PartialEq)]
pub enum CelValue {
    /// `null`.
    Null,
    /// A `bool`.
    Bool(bool),
    /// An `int`.
    Int(i64),
    /// A `uint`.
    Uint(u64),
    /// A `double`.
    Double(f64),
    /// A `string`.
    String(String),
    /// A `bytes` value.
    Bytes(Vec<u8>),
    /// A `list`.
    List(Vec<CelValue>),
    /// A `map`, in insertion order; keys are `int`, `uint`, `bool` or `string` and unique.
    Map(Vec<(CelValue, CelValue)>),
    /// A type value (`int`, `type(x)`).
    Type(CelType),
}

impl CelValue {
    /// The value a protobuf `Value` holding `value` has in CEL: numbers become `double`
    /// (whatever their JSON spelling), arrays lists, objects maps with string keys.
    pub fn from_json(value: &Json) -> CelValue {
        match value {
            Json::Null => CelValue::Null,
            Json::Bool(b) => CelValue::Bool(*b),
            Json::Number(n) => CelValue::Double(n.as_f64().unwrap_or(f64::NAN)),
            Json::String(s) => CelValue::String(s.clone()),
            Json::Array(items) => CelValue::List(items.iter().map(CelValue::from_json).collect()),
            Json::Object(map) => {
                CelValue::Map(map.iter().map(|(k, v)| (CelValue::String(k.clone()), CelValue::from_json(v))).collect())
            }
        }
    }

    /// The value as JSON, as the backend turns a selector's result into a protobuf `Value`:
    /// numbers stay numbers (whole doubles within ±2^53 are written without a fraction),
    /// bytes become base64 text. Maps need string keys; NaN, infinities and types have no
    /// JSON form.
    pub fn to_json(&self) -> Result<Json, CelError> {
        Ok(match self {
            CelValue::Null => Json::Null,
            CelValue::Bool(b) => Json::Bool(*b),
            CelValue::Int(i) => Json::from(*i),
            CelValue::Uint(u) => Json::from(*u),
            CelValue::Double(d) => double_to_json(*d)?,
            CelValue::String(s) => Json::String(s.clone()),
            CelValue::Bytes(b) => Json::String(base64_encode(b)),
            CelValue::List(items) => Json::Array(items.iter().map(CelValue::to_json).collect::<Result<_, _>>()?),
            CelValue::Map(entries) => {
                let mut object = serde_json::Map::new();
                for (key, value) in entries {
                    let CelValue::String(key) = key else {
                        return Err(CelError::NotJson { reason: format!("the map key {key} is not a string") });
                    };
                    object.insert(key.clone(), value.to_json()?);
                }
                Json::Object(object)
            }
            CelValue::Type(t) => return Err(CelError::NotJson { reason: format!("`{t}` is a type") }),
        })
    }

    /// The value's CEL type.
    pub fn cel_type(&self) -> CelType {
        match self {
            CelValue::Null => CelType::Null,
            CelValue::Bool(_) => CelType::Bool,
            CelValue::Int(_) => CelType::Int,
            CelValue::Uint(_) => CelType::Uint,
            CelValue::Double(_) => CelType::Double,
            CelValue::String(_) => CelType::String,
            CelValue::Bytes(_) => CelType::Bytes,
            CelValue::List(_) => CelType::List,
            CelValue::Map(_) => CelType::Map,
            CelValue::Type(_) => CelType::Type,
        }
    }

    /// The value with its type, for messages (`string "abc"`).
    fn described(&self) -> String {
        format!("{} {self}", self.cel_type())
    }
}

/// CEL literal syntax (`"a\"b"`, `1u`, `2.0`, `[1, "x"]`, `{"k": true}`).
impl fmt::Display for CelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CelValue::Null => f.write_str("null"),
            CelValue::Bool(b) => write!(f, "{b}"),
            CelValue::Int(i) => write!(f, "{i}"),
            CelValue::Uint(u) => write!(f, "{u}u"),
            CelValue::Double(d) if d.is_nan() => f.write_str("NaN"),
            CelValue::Double(d) if d.is_infinite() => f.write_str(if *d > 0.0 { "Infinity" } else { "-Infinity" }),
            CelValue::Double(d) => write!(f, "{d:?}"),
            CelValue::String(s) => {
                f.write_char('"')?;
                for c in s.chars() {
                    match c {
                        '"' => f.write_str("\\\"")?,
                        '\\' => f.write_str("\\\\")?,
                        '\n' => f.write_str("\\n")?,
                        '\r' => f.write_str("\\r")?,
                        '\t' => f.write_str("\\t")?,
                        c if c.is_control() => write!(f, "\\u{:04x}", u32::from(c))?,
                        c => f.write_char(c)?,
                    }
                }
                f.write_char('"')
            }
            CelValue::Bytes(bytes) => {
                f.write_str("b\"")?;
                for &b in bytes {
                    match b {
                        b'"' => f.write_str("\\\"")?,
                        b'\\' => f.write_str("\\\\")?,
                        0x20..=0x7e => f.write_char(char::from(b))?,
                        _ => write!(f, "\\x{b:02x}")?,
                    }
                }
                f.write_char('"')
            }
            CelValue::List(items) => {
                f.write_char('[')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(']')
            }
            CelValue::Map(entries) => {
                f.write_char('{')?;
                for (i, (key, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{key}: {value}")?;
                }
                f.write_char('}')
            }
            CelValue::Type(t) => write!(f, "{t}"),
        }
    }
}

const TWO_POW_53: f64 = 9_007_199_254_740_992.0;
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

fn double_to_json(d: f64) -> Result<Json, CelError> {
    if !d.is_finite() {
        return Err(CelError::NotJson { reason: format!("{} has no JSON form", CelValue::Double(d)) });
    }
    if d.fract() == 0.0 && d.abs() < TWO_POW_53 {
        // Exact: |d| < 2^53 is a whole number.
        #[allow(clippy::cast_possible_truncation)]
        return Ok(Json::from(d as i64));
    }
    serde_json::Number::from_f64(d)
        .map(Json::Number)
        .ok_or_else(|| CelError::NotJson { reason: format!("{d} has no JSON form") })
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b0 = chunk.first().copied().unwrap_or(0);
        let b1 = chunk.get(1).copied().unwrap_or(0);
        let b2 = chunk.get(2).copied().unwrap_or(0);
        let n = (u32::from(b0) << 16) | (u32::from(b1) << 8) | u32::from(b2);
        let sextet = |shift: u32| char::from(ALPHABET[((n >> shift) & 63) as usize]);
        out.push(sextet(18));
        out.push(sextet(12));
        out.push(if chunk.len() > 1 { sextet(6) } else { '=' });
        out.push(if chunk.len() > 2 { sextet(0) } else { '=' });
    }
    out
}

// ---------------------------------------------------------------------------------------
// Activation
// ---------------------------------------------------------------------------------------

/// The variables an evaluation sees.
#[derive(Debug, Clone, Default)]
pub struct Activation {
    vars: BTreeMap<String, CelValue>,
    unset: Vec<String>,
}

impl Activation {
    /// No variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bind `name` to `value` (builder style).
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: CelValue) -> Self {
        self.insert(name, value);
        self
    }

    /// Declare `name` as a variable of the environment that has no value in this evaluation:
    /// using it is [`CelError::UnsetVariable`] instead of [`CelError::UnknownVariable`].
    #[must_use]
    pub fn with_unset(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        self.vars.remove(&name);
        if !self.unset.contains(&name) {
            self.unset.push(name);
        }
        self
    }

    /// Bind `name` to `value`.
    pub fn insert(&mut self, name: impl Into<String>, value: CelValue) {
        let name = name.into();
        self.unset.retain(|n| *n != name);
        self.vars.insert(name, value);
    }

    /// The value bound to `name`.
    pub fn get(&self, name: &str) -> Option<&CelValue> {
        self.vars.get(name)
    }
}

// ---------------------------------------------------------------------------------------
// Entry points for the runner
// ---------------------------------------------------------------------------------------

/// The variables the backend binds for a `triggerPolicy.condition`: `inputs` with
/// `parameter_values` (each value as its protobuf `Value`, numbers as doubles), empty
/// `parameters` and `artifacts`, and an empty `outputs`.
pub fn condition_activation(parameter_values: &serde_json::Map<String, Json>) -> Activation {
    let empty = || CelValue::Map(Vec::new());
    let field = |name: &str, value: CelValue| (CelValue::String(name.to_owned()), value);
    let params = parameter_values.iter().map(|(k, v)| field(k, CelValue::from_json(v))).collect();
    Activation::new()
        .with(
            "inputs",
            CelValue::Map(vec![
                field("parameter_values", CelValue::Map(params)),
                field("parameters", empty()),
                field("artifacts", empty()),
            ]),
        )
        .with(
            "outputs",
            CelValue::Map(vec![
                field("parameters", empty()),
                field("artifacts", empty()),
                field("output_file", CelValue::String(String::new())),
            ]),
        )
}

/// Evaluate a task's `triggerPolicy.condition` over the task's resolved input parameters, as
/// the backend driver does: `true` runs the task, `false` skips it. A result that is not a
/// bool is an error ([`CelError::NotBool`]), as in the backend.
pub fn eval_condition(expr: &str, parameter_values: &serde_json::Map<String, Json>) -> Result<bool, CelError> {
    let program = Program::parse(expr)?;
    program.check_declared(&["inputs", "outputs"])?;
    match program.eval(&condition_activation(parameter_values))? {
        CelValue::Bool(b) => Ok(b),
        other => Err(CelError::NotBool { kind: other.cel_type().name().to_owned(), value: other.to_string() }),
    }
}

/// Evaluate an input's `parameterExpressionSelector` over the input's resolved `value`, as the
/// backend driver does (see the module documentation for the variables), and return the
/// selected value as JSON.
pub fn eval_selector(expr: &str, value: &Json) -> Result<Json, CelError> {
    const FIELDS: [&str; 6] =
        ["null_value", "number_value", "string_value", "bool_value", "struct_value", "list_value"];
    let program = Program::parse(expr)?;
    program.check_declared(&FIELDS)?;
    let set = match value {
        Json::Null => "null_value",
        Json::Bool(_) => "bool_value",
        Json::Number(_) => "number_value",
        Json::String(_) => "string_value",
        Json::Array(_) => "list_value",
        Json::Object(_) => "struct_value",
    };
    let mut vars = FIELDS.iter().filter(|f| **f != set).fold(Activation::new(), |a, f| a.with_unset(*f));
    vars.insert(set, CelValue::from_json(value));
    vars.insert("string_value", CelValue::String(pb_value_to_text(value)));
    program.eval(&vars)?.to_json()
}

/// A value's text as the backend computes it (`PbValueToText`): strings as they are, `null` as
/// the empty text, numbers in plain decimal (`3`, `0.5`), `true`/`false`, lists and structs as
/// the compact JSON Go writes (keys sorted, `<`, `>` and `&` escaped, whole numbers without a
/// fraction).
pub fn pb_value_to_text(value: &Json) -> String {
    match value {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => format!("{}", n.as_f64().unwrap_or(f64::NAN)),
        Json::Array(_) | Json::Object(_) => crate::ir::go_json(value),
    }
}

// ---------------------------------------------------------------------------------------
// Syntax tree
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Expr {
    kind: ExprKind,
    /// Character offset of the node's token (the operator for operations).
    pos: usize,
    /// Height of the subtree (a leaf is 1).
    depth: usize,
}

#[derive(Debug, Clone)]
enum ExprKind {
    Literal(CelValue),
    Ident(String),
    List(Vec<Expr>),
    Map(Vec<(Expr, Expr)>),
    Select { operand: Box<Expr>, field: String },
    Has { operand: Box<Expr>, field: String },
    Index { operand: Box<Expr>, index: Box<Expr> },
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary { op: BinOp, lhs: Box<Expr>, rhs: Box<Expr> },
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Ternary { cond: Box<Expr>, then: Box<Expr>, otherwise: Box<Expr> },
    Call { function: String, target: Option<Box<Expr>>, args: Vec<Expr> },
    Comprehension { kind: Macro, range: Box<Expr>, var: String, filter: Option<Box<Expr>>, body: Box<Expr> },
}

impl ExprKind {
    fn max_child_depth(&self) -> usize {
        let max_of = |items: &[Expr]| items.iter().map(|e| e.depth).max().unwrap_or(0);
        match self {
            ExprKind::Literal(_) | ExprKind::Ident(_) => 0,
            ExprKind::List(items) | ExprKind::And(items) | ExprKind::Or(items) => max_of(items),
            ExprKind::Map(entries) => entries.iter().map(|(k, v)| k.depth.max(v.depth)).max().unwrap_or(0),
            ExprKind::Select { operand, .. }
            | ExprKind::Has { operand, .. }
            | ExprKind::Not(operand)
            | ExprKind::Neg(operand) => operand.depth,
            ExprKind::Index { operand, index } => operand.depth.max(index.depth),
            ExprKind::Binary { lhs, rhs, .. } => lhs.depth.max(rhs.depth),
            ExprKind::Ternary { cond, then, otherwise } => cond.depth.max(then.depth).max(otherwise.depth),
            ExprKind::Call { target, args, .. } => target.as_ref().map_or(0, |t| t.depth).max(max_of(args)),
            ExprKind::Comprehension { range, filter, body, .. } => {
                range.depth.max(body.depth).max(filter.as_ref().map_or(0, |f| f.depth))
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    In,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::In => "in",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Macro {
    All,
    Exists,
    ExistsOne,
    Map,
    Filter,
}

impl Macro {
    fn name(self) -> &'static str {
        match self {
            Macro::All => "all",
            Macro::Exists => "exists",
            Macro::ExistsOne => "exists_one",
            Macro::Map => "map",
            Macro::Filter => "filter",
        }
    }
}

/// A failure while lexing, parsing or checking, located by character offset.
enum Fail {
    Syntax(usize, String),
    Check(usize, String),
    TooDeep(usize),
    Unsupported(String),
}

impl Fail {
    fn into_error(self, source: &str) -> CelError {
        match self {
            Fail::Syntax(pos, message) => {
                let (line, column, snippet) = locate(source, pos);
                CelError::Syntax { message, line, column, snippet }
            }
            Fail::Check(pos, message) => {
                let (line, column, snippet) = locate(source, pos);
                CelError::Check { message, line, column, snippet }
            }
            Fail::TooDeep(pos) => {
                let (line, column, snippet) = locate(source, pos);
                CelError::TooDeep { limit: MAX_NESTING_DEPTH, line, column, snippet }
            }
            Fail::Unsupported(feature) => CelError::Unsupported { feature },
        }
    }
}

/// Line, column (both 1-based) and a caret snippet for character offset `pos` of `source`.
fn locate(source: &str, pos: usize) -> (usize, usize, String) {
    let chars: Vec<char> = source.chars().collect();
    let pos = pos.min(chars.len());
    let mut line_no = 1;
    let mut line_start = 0;
    for (i, c) in chars.iter().enumerate().take(pos) {
        if *c == '\n' {
            line_no += 1;
            line_start = i + 1;
        }
    }
    let line_end = chars.iter().skip(pos).position(|c| *c == '\n').map_or(chars.len(), |k| pos + k);
    let line: Vec<char> =
        chars.get(line_start..line_end).unwrap_or(&[]).iter().map(|c| if c.is_control() { ' ' } else { *c }).collect();
    let col = pos - line_start;
    let from = if col > 60 { col - 40 } else { 0 };
    let to = (from + 100).min(line.len()).max(from);
    let shown: String = line.get(from..to).unwrap_or(&[]).iter().collect();
    let prefix = if from > 0 { "…" } else { "" };
    let suffix = if to < line.len() { "…" } else { "" };
    let caret = prefix.chars().count() + (col - from);
    (line_no, col + 1, format!(" | {prefix}{shown}{suffix}\n | {}^", ".".repeat(caret)))
}

// ---------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// An integer literal's magnitude (its sign is a separate `-`).
    Int(u64),
    Uint(u64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
    Ident(String),
    True,
    False,
    Null,
    In,
    LParen,
    RParen,
    LBracket,
    RBracket,
    LBrace,
    RBrace,
    Dot,
    Comma,
    Colon,
    Question,
    Plus,
    Minus,
    Star,
    Slash,
    Percent,
    Bang,
    EqEq,
    NotEq,
    Lt,
    Le,
    Gt,
    Ge,
    AndAnd,
    OrOr,
    Eof,
}

impl Tok {
    fn describe(&self) -> String {
        let punct = match self {
            Tok::Int(_) | Tok::Uint(_) | Tok::Double(_) => return "a number".to_owned(),
            Tok::Str(_) => return "a string".to_owned(),
            Tok::Bytes(_) => return "a bytes literal".to_owned(),
            Tok::Ident(name) => return format!("`{name}`"),
            Tok::Eof => return "the end of the expression".to_owned(),
            Tok::True => "true",
            Tok::False => "false",
            Tok::Null => "null",
            Tok::In => "in",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::Dot => ".",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::Question => "?",
            Tok::Plus => "+",
            Tok::Minus => "-",
            Tok::Star => "*",
            Tok::Slash => "/",
            Tok::Percent => "%",
            Tok::Bang => "!",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::AndAnd => "&&",
            Tok::OrOr => "||",
        };
        format!("`{punct}`")
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

struct Lexer<'s> {
    src: &'s [char],
    pos: usize,
}

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.src.get(self.pos + ahead).copied()
    }

    fn tokens(mut self) -> Result<Vec<Token>, Fail> {
        let mut out = Vec::new();
        loop {
            self.skip_blank();
            let start = self.pos;
            let Some(c) = self.peek(0) else {
                out.push(Token { tok: Tok::Eof, pos: start });
                return Ok(out);
            };
            let tok = if c.is_ascii_digit() || (c == '.' && self.peek(1).is_some_and(|d| d.is_ascii_digit())) {
                self.number()?
            } else if let Some((bytes, raw, skip)) = self.string_prefix() {
                self.pos += skip;
                self.string(bytes, raw)?
            } else if c == '_' || c.is_ascii_alphabetic() {
                self.ident()
            } else {
                self.punct(c)?
            };
            out.push(Token { tok, pos: start });
        }
    }

    fn skip_blank(&mut self) {
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(' ' | '\t' | '\n' | '\r' | '\u{c}'), _) => self.pos += 1,
                (Some('/'), Some('/')) => {
                    while self.peek(0).is_some_and(|c| c != '\n') {
                        self.pos += 1;
                    }
                }
                _ => return,
            }
        }
    }

    fn string_prefix(&self) -> Option<(bool, bool, usize)> {
        match (self.peek(0), self.peek(1), self.peek(2)) {
            (Some('"' | '\''), _, _) => Some((false, false, 0)),
            (Some('r' | 'R'), Some('"' | '\''), _) => Some((false, true, 1)),
            (Some('b' | 'B'), Some('"' | '\''), _) => Some((true, false, 1)),
            (Some('b' | 'B'), Some('r' | 'R'), Some('"' | '\'')) => Some((true, true, 2)),
            _ => None,
        }
    }

    fn ident(&mut self) -> Tok {
        let start = self.pos;
        while self.peek(0).is_some_and(|c| c == '_' || c.is_ascii_alphanumeric()) {
            self.pos += 1;
        }
        let name: String = self.src[start..self.pos].iter().collect();
        match name.as_str() {
            "true" => Tok::True,
            "false" => Tok::False,
            "null" => Tok::Null,
            "in" => Tok::In,
            _ => Tok::Ident(name),
        }
    }

    fn digits(&mut self, radix: u32) {
        while self.peek(0).is_some_and(|c| c.is_digit(radix)) {
            self.pos += 1;
        }
    }

    fn number(&mut self) -> Result<Tok, Fail> {
        let start = self.pos;
        if self.peek(0) == Some('0') && self.peek(1) == Some('x') && self.peek(2).is_some_and(|c| c.is_ascii_hexdigit())
        {
            self.pos += 2;
            let digits_start = self.pos;
            self.digits(16);
            let text: String = self.src[digits_start..self.pos].iter().collect();
            let value = u64::from_str_radix(&text, 16)
                .map_err(|_| Fail::Syntax(start, "hexadecimal literal out of range".to_owned()))?;
            if matches!(self.peek(0), Some('u' | 'U')) {
                self.pos += 1;
                return Ok(Tok::Uint(value));
            }
            return Ok(Tok::Int(value));
        }
        self.digits(10);
        let mut float = false;
        if self.peek(0) == Some('.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            self.digits(10);
            float = true;
        }
        if matches!(self.peek(0), Some('e' | 'E')) {
            let signed = matches!(self.peek(1), Some('+' | '-'));
            let first = if signed { self.peek(2) } else { self.peek(1) };
            if first.is_some_and(|c| c.is_ascii_digit()) {
                self.pos += if signed { 2 } else { 1 };
                self.digits(10);
                float = true;
            }
        }
        let text: String = self.src[start..self.pos].iter().collect();
        if float {
            return match text.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(Tok::Double(v)),
                _ => Err(Fail::Syntax(start, format!("double literal {text} is out of range"))),
            };
        }
        if matches!(self.peek(0), Some('u' | 'U')) {
            self.pos += 1;
            return text
                .parse::<u64>()
                .map(Tok::Uint)
                .map_err(|_| Fail::Syntax(start, format!("uint literal {text}u is out of range")));
        }
        text.parse::<u64>()
            .map(Tok::Int)
            .map_err(|_| Fail::Syntax(start, format!("int literal {text} is out of range")))
    }

    /// A string or bytes literal; `self.pos` is at the opening quote.
    fn string(&mut self, bytes: bool, raw: bool) -> Result<Tok, Fail> {
        let start = self.pos;
        let Some(quote) = self.peek(0) else {
            return Err(Fail::Syntax(start, "expected a quote".to_owned()));
        };
        let triple = self.peek(1) == Some(quote) && self.peek(2) == Some(quote);
        self.pos += if triple { 3 } else { 1 };
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.peek(0) else {
                return Err(Fail::Syntax(start, "unterminated string literal".to_owned()));
            };
            if triple {
                if c == quote && self.peek(1) == Some(quote) && self.peek(2) == Some(quote) {
                    self.pos += 3;
                    break;
                }
            } else if c == quote {
                self.pos += 1;
                break;
            } else if c == '\n' || c == '\r' {
                return Err(Fail::Syntax(
                    self.pos,
                    "newline in a string literal (use a triple-quoted string or \\n)".to_owned(),
                ));
            }
            if c == '\\' && !raw {
                self.escape(bytes, &mut buf)?;
                continue;
            }
            push_char(&mut buf, c);
            self.pos += 1;
        }
        if bytes {
            Ok(Tok::Bytes(buf))
        } else {
            String::from_utf8(buf)
                .map(Tok::Str)
                .map_err(|_| Fail::Syntax(start, "string literal is not valid UTF-8".to_owned()))
        }
    }

    fn hex_escape(&mut self, count: usize, esc_pos: usize) -> Result<u32, Fail> {
        let mut value = 0u32;
        for _ in 0..count {
            let digit = self.peek(0).and_then(|c| c.to_digit(16)).ok_or_else(|| {
                Fail::Syntax(esc_pos, format!("invalid escape sequence: expected {count} hexadecimal digits"))
            })?;
            value = value * 16 + digit;
            self.pos += 1;
        }
        Ok(value)
    }

    /// One escape sequence; `self.pos` is at the backslash.
    fn escape(&mut self, bytes: bool, buf: &mut Vec<u8>) -> Result<(), Fail> {
        let esc_pos = self.pos;
        let Some(e) = self.peek(1) else {
            return Err(Fail::Syntax(esc_pos, "unterminated string literal".to_owned()));
        };
        self.pos += 2;
        let simple = match e {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '"' | '\'' | '\\' | '?' | '`' => Some(e),
            _ => None,
        };
        if let Some(c) = simple {
            push_char(buf, c);
            return Ok(());
        }
        match e {
            'x' | 'X' => {
                let v = self.hex_escape(2, esc_pos)?;
                push_code(buf, bytes, v);
            }
            '0'..='3' => {
                let mut v = e.to_digit(8).unwrap_or(0);
                for _ in 0..2 {
                    let digit = self.peek(0).and_then(|c| c.to_digit(8)).ok_or_else(|| {
                        Fail::Syntax(esc_pos, "invalid escape sequence: expected three octal digits".to_owned())
                    })?;
                    v = v * 8 + digit;
                    self.pos += 1;
                }
                push_code(buf, bytes, v);
            }
            'u' | 'U' => {
                if bytes {
                    return Err(Fail::Syntax(
                        esc_pos,
                        format!("\\{e} escapes are not allowed in bytes literals (use \\x or octal escapes)"),
                    ));
                }
                let mut v = self.hex_escape(if e == 'u' { 4 } else { 8 }, esc_pos)?;
                if e == 'u' && (0xD800..0xDC00).contains(&v) && self.peek(0) == Some('\\') && self.peek(1) == Some('u')
                {
                    // A UTF-16 surrogate pair, as the CEL specification allows.
                    let save = self.pos;
                    self.pos += 2;
                    let low = self.hex_escape(4, esc_pos)?;
                    if (0xDC00..0xE000).contains(&low) {
                        v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00);
                    } else {
                        self.pos = save;
                    }
                }
                let c = char::from_u32(v).ok_or_else(|| {
                    Fail::Syntax(esc_pos, format!("invalid escape sequence: U+{v:04X} is not a Unicode scalar value"))
                })?;
                push_char(buf, c);
            }
            other => {
                return Err(Fail::Syntax(esc_pos, format!("invalid escape sequence \\{other}")));
            }
        }
        Ok(())
    }

    fn punct(&mut self, c: char) -> Result<Tok, Fail> {
        let two = |second: char| self.peek(1) == Some(second);
        let (tok, len) = match c {
            '=' if two('=') => (Tok::EqEq, 2),
            '!' if two('=') => (Tok::NotEq, 2),
            '<' if two('=') => (Tok::Le, 2),
            '>' if two('=') => (Tok::Ge, 2),
            '&' if two('&') => (Tok::AndAnd, 2),
            '|' if two('|') => (Tok::OrOr, 2),
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            '[' => (Tok::LBracket, 1),
            ']' => (Tok::RBracket, 1),
            '{' => (Tok::LBrace, 1),
            '}' => (Tok::RBrace, 1),
            '.' => (Tok::Dot, 1),
            ',' => (Tok::Comma, 1),
            ':' => (Tok::Colon, 1),
            '?' => (Tok::Question, 1),
            '+' => (Tok::Plus, 1),
            '-' => (Tok::Minus, 1),
            '*' => (Tok::Star, 1),
            '/' => (Tok::Slash, 1),
            '%' => (Tok::Percent, 1),
            '!' => (Tok::Bang, 1),
            '<' => (Tok::Lt, 1),
            '>' => (Tok::Gt, 1),
            '=' => return Err(Fail::Syntax(self.pos, "unexpected `=` (equality is `==`)".to_owned())),
            '&' => return Err(Fail::Syntax(self.pos, "unexpected `&` (logical and is `&&`)".to_owned())),
            '|' => return Err(Fail::Syntax(self.pos, "unexpected `|` (logical or is `||`)".to_owned())),
            other => return Err(Fail::Syntax(self.pos, format!("unexpected character {other:?}"))),
        };
        self.pos += len;
        Ok(tok)
    }
}

fn push_char(buf: &mut Vec<u8>, c: char) {
    let mut tmp = [0u8; 4];
    buf.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
}

/// A `\x` or octal escape: a byte in bytes literals, a code point (≤ U+00FF) in strings.
fn push_code(buf: &mut Vec<u8>, bytes: bool, value: u32) {
    match (bytes, u8::try_from(value)) {
        (true, Ok(b)) => buf.push(b),
        _ => push_char(buf, char::from_u32(value).unwrap_or(char::REPLACEMENT_CHARACTER)),
    }
}

// ---------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------

const RESERVED: [&str; 17] = [
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

static EOF_TOKEN: Tok = Tok::Eof;

fn node(kind: ExprKind, pos: usize) -> Result<Expr, Fail> {
    let depth = 1 + kind.max_child_depth();
    if depth > MAX_NESTING_DEPTH {
        return Err(Fail::TooDeep(pos));
    }
    Ok(Expr { kind, pos, depth })
}

struct Parser {
    toks: Vec<Token>,
    at: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> &Tok {
        self.toks.get(self.at).map_or(&EOF_TOKEN, |t| &t.tok)
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        self.toks.get(self.at + ahead).map_or(&EOF_TOKEN, |t| &t.tok)
    }

    fn pos(&self) -> usize {
        self.toks.get(self.at).or_else(|| self.toks.last()).map_or(0, |t| t.pos)
    }

    fn bump(&mut self) -> Token {
        let token = self.toks.get(self.at).cloned().unwrap_or(Token { tok: Tok::Eof, pos: self.pos() });
        if token.tok != Tok::Eof {
            self.at += 1;
        }
        token
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.peek() == tok {
            self.at += 1;
            true
        } else {
            false
        }
    }

    #[inline(never)]
    fn unexpected(&self, wanted: &str) -> Fail {
        Fail::Syntax(self.pos(), format!("{wanted}, found {}", self.peek().describe()))
    }

    // The recursive descent is split into small functions so that each nesting level costs
    // little stack, even in debug builds: `(((…)))` recurses parse_expr → parse_binary →
    // parse_unary → parse_member → parse_primary → parse_parenthesized → parse_expr.

    fn parse_expr(&mut self) -> Result<Expr, Fail> {
        self.depth += 1;
        let result = if self.depth > MAX_NESTING_DEPTH {
            Err(Fail::TooDeep(self.pos()))
        } else {
            match self.parse_binary(1) {
                Ok(cond) if *self.peek() == Tok::Question => self.parse_ternary(cond),
                other => other,
            }
        };
        self.depth -= 1;
        result
    }

    /// `cond ? then : otherwise`; at the `?`. The middle operand is not itself a ternary.
    #[inline(never)]
    fn parse_ternary(&mut self, cond: Expr) -> Result<Expr, Fail> {
        let pos = self.pos();
        self.at += 1;
        let then = self.parse_binary(1)?;
        if !self.eat(&Tok::Colon) {
            return Err(self.unexpected("expected `:`"));
        }
        let otherwise = self.parse_expr()?;
        node(ExprKind::Ternary { cond: Box::new(cond), then: Box::new(then), otherwise: Box::new(otherwise) }, pos)
    }

    /// Binary operators of precedence `min_prec` and tighter (precedence climbing):
    /// 1 `||`, 2 `&&`, 3 relations and `in`, 4 `+ -`, 5 `* / %`; all left-associative.
    fn parse_binary(&mut self, min_prec: u8) -> Result<Expr, Fail> {
        let mut lhs = self.parse_unary()?;
        while let Some((prec, op)) = binary_operator(self.peek()) {
            if prec < min_prec {
                break;
            }
            lhs = self.parse_binary_rhs(lhs, prec, op)?;
        }
        Ok(lhs)
    }

    /// The operator at the cursor and its right operand; `&&`/`||` chains become one n-ary node.
    #[inline(never)]
    fn parse_binary_rhs(&mut self, lhs: Expr, prec: u8, op: Option<BinOp>) -> Result<Expr, Fail> {
        let pos = self.pos();
        if let Some(op) = op {
            self.at += 1;
            let rhs = self.parse_binary(prec + 1)?;
            return node(ExprKind::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }, pos);
        }
        let logical = if prec == 1 { Tok::OrOr } else { Tok::AndAnd };
        let mut terms = vec![lhs];
        while self.eat(&logical) {
            terms.push(self.parse_binary(prec + 1)?);
        }
        node(if prec == 1 { ExprKind::Or(terms) } else { ExprKind::And(terms) }, pos)
    }

    fn parse_unary(&mut self) -> Result<Expr, Fail> {
        match self.peek() {
            Tok::Bang | Tok::Minus => self.parse_prefixed(),
            _ => self.parse_member(),
        }
    }

    /// `!`… or `-`… followed by a member expression. As in cel-go, an even number of the same
    /// operator cancels out, and a single `-` before a number is the number's sign.
    #[inline(never)]
    fn parse_prefixed(&mut self) -> Result<Expr, Fail> {
        let pos = self.pos();
        let op = self.peek().clone();
        let mut count = 0;
        while *self.peek_at(count) == op {
            count += 1;
        }
        if op == Tok::Minus && count == 1 && matches!(self.peek_at(1), Tok::Int(_) | Tok::Double(_)) {
            return self.parse_member();
        }
        self.at += count;
        let operand = self.parse_member()?;
        match (count % 2 == 1, op == Tok::Bang) {
            (false, _) => Ok(operand),
            (true, true) => node(ExprKind::Not(Box::new(operand)), pos),
            (true, false) => node(ExprKind::Neg(Box::new(operand)), pos),
        }
    }

    fn parse_member(&mut self) -> Result<Expr, Fail> {
        let mut expr = self.parse_primary()?;
        while matches!(self.peek(), Tok::Dot | Tok::LBracket | Tok::LBrace) {
            expr = self.parse_postfix(expr)?;
        }
        Ok(expr)
    }

    /// One `.field`, `.method(args)`, `[index]` (or a message construction `{`) after `expr`.
    #[inline(never)]
    fn parse_postfix(&mut self, expr: Expr) -> Result<Expr, Fail> {
        let open = self.bump();
        match open.tok {
            Tok::Dot => {
                let pos = self.pos();
                let Tok::Ident(field) = self.peek().clone() else {
                    return Err(self.unexpected("expected a field or method name after `.`"));
                };
                self.at += 1;
                if self.eat(&Tok::LParen) {
                    let args = self.parse_args()?;
                    make_call(Some(expr), field, args, pos)
                } else {
                    node(ExprKind::Select { operand: Box::new(expr), field }, pos)
                }
            }
            Tok::LBracket => {
                let index = self.parse_expr()?;
                if !self.eat(&Tok::RBracket) {
                    return Err(self.unexpected("expected `]`"));
                }
                node(ExprKind::Index { operand: Box::new(expr), index: Box::new(index) }, open.pos)
            }
            _ if matches!(expr.kind, ExprKind::Ident(_) | ExprKind::Select { .. }) => {
                Err(Fail::Unsupported("protobuf message construction (`Name{field: value}`)".to_owned()))
            }
            _ => Err(Fail::Syntax(open.pos, "unexpected `{`".to_owned())),
        }
    }

    fn parse_primary(&mut self) -> Result<Expr, Fail> {
        match self.peek() {
            Tok::LParen => self.parse_parenthesized(),
            Tok::LBracket => self.parse_list(),
            Tok::LBrace => self.parse_map(),
            Tok::Ident(_) | Tok::Dot => self.parse_name(),
            _ => self.parse_literal(),
        }
    }

    #[inline(never)]
    fn parse_parenthesized(&mut self) -> Result<Expr, Fail> {
        self.at += 1;
        let inner = self.parse_expr()?;
        if self.eat(&Tok::RParen) { Ok(inner) } else { Err(self.unexpected("expected `)`")) }
    }

    #[inline(never)]
    fn parse_literal(&mut self) -> Result<Expr, Fail> {
        let Token { tok, pos } = self.bump();
        let value = match tok {
            Tok::Int(magnitude) => int_literal(magnitude, false, pos)?,
            Tok::Uint(u) => CelValue::Uint(u),
            Tok::Double(d) => CelValue::Double(d),
            Tok::Str(s) => CelValue::String(s),
            Tok::Bytes(b) => CelValue::Bytes(b),
            Tok::True => CelValue::Bool(true),
            Tok::False => CelValue::Bool(false),
            Tok::Null => CelValue::Null,
            Tok::Minus => match self.bump().tok {
                Tok::Int(magnitude) => int_literal(magnitude, true, pos)?,
                Tok::Double(d) => CelValue::Double(-d),
                _ => return Err(Fail::Syntax(pos, "unexpected `-`".to_owned())),
            },
            Tok::Eof => return Err(Fail::Syntax(pos, "unexpected end of the expression".to_owned())),
            other => return Err(Fail::Syntax(pos, format!("unexpected {}", other.describe()))),
        };
        node(ExprKind::Literal(value), pos)
    }

    /// A name (optionally with a leading `.`), a global call or the `has()` macro.
    #[inline(never)]
    fn parse_name(&mut self) -> Result<Expr, Fail> {
        let dot = self.eat(&Tok::Dot);
        let Token { tok, pos } = self.bump();
        let Tok::Ident(name) = tok else {
            let wanted = if dot { "a name after the leading `.`" } else { "a name" };
            return Err(Fail::Syntax(pos, format!("expected {wanted}")));
        };
        if RESERVED.contains(&name.as_str()) {
            return Err(Fail::Syntax(pos, format!("reserved identifier `{name}`")));
        }
        if self.eat(&Tok::LParen) {
            let args = self.parse_args()?;
            return make_call(None, name, args, pos);
        }
        node(ExprKind::Ident(name), pos)
    }

    /// Call arguments; the `(` is consumed.
    fn parse_args(&mut self) -> Result<Vec<Expr>, Fail> {
        let mut args = Vec::new();
        if self.eat(&Tok::RParen) {
            return Ok(args);
        }
        loop {
            args.push(self.parse_expr()?);
            if self.eat(&Tok::RParen) {
                return Ok(args);
            }
            if !self.eat(&Tok::Comma) {
                return Err(self.unexpected("expected `,` or `)`"));
            }
        }
    }

    /// A list literal (a trailing comma is allowed).
    #[inline(never)]
    fn parse_list(&mut self) -> Result<Expr, Fail> {
        let pos = self.pos();
        self.at += 1;
        let mut items = Vec::new();
        loop {
            if self.eat(&Tok::RBracket) {
                break;
            }
            items.push(self.parse_expr()?);
            if !self.eat(&Tok::Comma) {
                if self.eat(&Tok::RBracket) {
                    break;
                }
                return Err(self.unexpected("expected `,` or `]`"));
            }
        }
        node(ExprKind::List(items), pos)
    }

    /// A map literal (a trailing comma is allowed).
    #[inline(never)]
    fn parse_map(&mut self) -> Result<Expr, Fail> {
        let pos = self.pos();
        self.at += 1;
        let mut entries = Vec::new();
        loop {
            if self.eat(&Tok::RBrace) {
                break;
            }
            let key = self.parse_expr()?;
            if !self.eat(&Tok::Colon) {
                return Err(self.unexpected("expected `:`"));
            }
            let value = self.parse_expr()?;
            entries.push((key, value));
            if !self.eat(&Tok::Comma) {
                if self.eat(&Tok::RBrace) {
                    break;
                }
                return Err(self.unexpected("expected `,` or `}`"));
            }
        }
        node(ExprKind::Map(entries), pos)
    }
}

/// The precedence of a binary operator token and the operator (`None` for `&&`/`||`).
fn binary_operator(tok: &Tok) -> Option<(u8, Option<BinOp>)> {
    Some(match tok {
        Tok::OrOr => (1, None),
        Tok::AndAnd => (2, None),
        Tok::Lt => (3, Some(BinOp::Lt)),
        Tok::Le => (3, Some(BinOp::Le)),
        Tok::Gt => (3, Some(BinOp::Gt)),
        Tok::Ge => (3, Some(BinOp::Ge)),
        Tok::EqEq => (3, Some(BinOp::Eq)),
        Tok::NotEq => (3, Some(BinOp::Ne)),
        Tok::In => (3, Some(BinOp::In)),
        Tok::Plus => (4, Some(BinOp::Add)),
        Tok::Minus => (4, Some(BinOp::Sub)),
        Tok::Star => (5, Some(BinOp::Mul)),
        Tok::Slash => (5, Some(BinOp::Div)),
        Tok::Percent => (5, Some(BinOp::Rem)),
        _ => return None,
    })
}

fn int_literal(magnitude: u64, negative: bool, pos: usize) -> Result<CelValue, Fail> {
    let value = if negative { 0i64.checked_sub_unsigned(magnitude) } else { i64::try_from(magnitude).ok() };
    value.map(CelValue::Int).ok_or_else(|| {
        let sign = if negative { "-" } else { "" };
        Fail::Syntax(pos, format!("int literal {sign}{magnitude} is out of range"))
    })
}

/// A call, or one of cel-go's macros (`has`, `all`, `exists`, `exists_one`, `map`, `filter`).
fn make_call(target: Option<Expr>, name: String, args: Vec<Expr>, pos: usize) -> Result<Expr, Fail> {
    let kind = match (&target, name.as_str(), args.len()) {
        (None, "has", 1) => None,
        (Some(_), "all", 2) => Some(Macro::All),
        (Some(_), "exists", 2) => Some(Macro::Exists),
        (Some(_), "exists_one", 2) => Some(Macro::ExistsOne),
        (Some(_), "map", 2 | 3) => Some(Macro::Map),
        (Some(_), "filter", 2) => Some(Macro::Filter),
        _ => return node(ExprKind::Call { function: name, target: target.map(Box::new), args }, pos),
    };
    let mut args = args.into_iter();
    let (Some(first), second, third) = (args.next(), args.next(), args.next()) else {
        return Err(Fail::Syntax(pos, format!("{name}() needs arguments")));
    };
    let (Some(range), Some(kind), Some(second)) = (target, kind, second) else {
        // has(e.f)
        let first_pos = first.pos;
        return match first.kind {
            ExprKind::Select { operand, field } => node(ExprKind::Has { operand, field }, pos),
            _ => Err(Fail::Syntax(
                first_pos,
                "invalid argument to has(): expected a field selection such as has(x.f)".to_owned(),
            )),
        };
    };
    let first_pos = first.pos;
    let ExprKind::Ident(var) = first.kind else {
        return Err(Fail::Syntax(first_pos, format!("the first argument of {name}() must be a simple name")));
    };
    let (filter, body) = match third {
        Some(body) => (Some(Box::new(second)), body),
        None => (None, second),
    };
    node(ExprKind::Comprehension { kind, range: Box::new(range), var, filter, body: Box::new(body) }, pos)
}

fn parse_chars(chars: &[char]) -> Result<Expr, Fail> {
    let toks = Lexer { src: chars, pos: 0 }.tokens()?;
    let mut parser = Parser { toks, at: 0, depth: 0 };
    let root = parser.parse_expr()?;
    if *parser.peek() != Tok::Eof {
        return Err(parser.unexpected("expected an operator or the end of the expression"));
    }
    Ok(root)
}

// ---------------------------------------------------------------------------------------
// Program
// ---------------------------------------------------------------------------------------

/// A parsed and checked CEL expression, ready to be evaluated any number of times.
#[derive(Debug, Clone)]
pub struct Program {
    source: String,
    root: Expr,
}

impl Program {
    /// Parse `source` and type-check what is statically known (literals, operators,
    /// functions; variables are dynamic), as cel-go does when it compiles.
    ///
    /// Errors: [`CelError::Syntax`] (with line, column and a caret snippet),
    /// [`CelError::Check`], [`CelError::TooLong`], [`CelError::TooDeep`],
    /// [`CelError::Unsupported`].
    pub fn parse(source: &str) -> Result<Program, CelError> {
        let chars: Vec<char> = source.chars().collect();
        if chars.len() > MAX_EXPRESSION_CHARS {
            return Err(CelError::TooLong { chars: chars.len(), limit: MAX_EXPRESSION_CHARS });
        }
        let root = parse_chars(&chars).map_err(|f| f.into_error(source))?;
        Checker { scopes: Vec::new() }.check(&root).map_err(|f| f.into_error(source))?;
        Ok(Program { source: source.to_owned(), root })
    }

    /// The expression's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Reject a name that is neither one of `names`, a macro's loop variable nor a type, as
    /// cel-go's checker does (even where `&&`, `||` or `?:` would never evaluate it) for an
    /// environment that declares exactly `names`.
    pub fn check_declared(&self, names: &[&str]) -> Result<(), CelError> {
        match first_undeclared(&self.root, names, &mut Vec::new()) {
            Some((name, pos)) => {
                let (line, column, snippet) = locate(&self.source, pos);
                Err(CelError::Check { message: format!("undeclared reference to '{name}'"), line, column, snippet })
            }
            None => Ok(()),
        }
    }

    /// Evaluate with the variables of `vars`.
    pub fn eval(&self, vars: &Activation) -> Result<CelValue, CelError> {
        Evaluator { vars, scopes: Vec::new(), cost: 0 }.eval(&self.root)
    }
}

/// The first free name of `e` that is not in `names` (nor a loop variable or a type name).
fn first_undeclared<'e>(e: &'e Expr, names: &[&str], scopes: &mut Vec<&'e str>) -> Option<(&'e str, usize)> {
    let mut walk = |child: &'e Expr| first_undeclared(child, names, scopes);
    match &e.kind {
        ExprKind::Literal(_) => None,
        ExprKind::Ident(name) => {
            let known =
                scopes.contains(&name.as_str()) || names.contains(&name.as_str()) || CelType::from_name(name).is_some();
            (!known).then_some((name.as_str(), e.pos))
        }
        ExprKind::List(items) | ExprKind::And(items) | ExprKind::Or(items) => items.iter().find_map(walk),
        ExprKind::Map(entries) => entries.iter().find_map(|(k, v)| walk(k).or_else(|| walk(v))),
        ExprKind::Select { operand, .. }
        | ExprKind::Has { operand, .. }
        | ExprKind::Not(operand)
        | ExprKind::Neg(operand) => walk(operand),
        ExprKind::Index { operand, index } => walk(operand).or_else(|| walk(index)),
        ExprKind::Binary { lhs, rhs, .. } => walk(lhs).or_else(|| walk(rhs)),
        ExprKind::Ternary { cond, then, otherwise } => walk(cond).or_else(|| walk(then)).or_else(|| walk(otherwise)),
        ExprKind::Call { target, args, .. } => {
            target.as_deref().and_then(&mut walk).or_else(|| args.iter().find_map(walk))
        }
        ExprKind::Comprehension { range, var, filter, body, .. } => {
            if let Some(found) = walk(range) {
                return Some(found);
            }
            scopes.push(var);
            let found = filter
                .as_deref()
                .and_then(|f| first_undeclared(f, names, scopes))
                .or_else(|| first_undeclared(body, names, scopes));
            scopes.pop();
            found
        }
    }
}

// ---------------------------------------------------------------------------------------
// Static check
// ---------------------------------------------------------------------------------------

/// A static type: what the checker knows about a sub-expression (`Dyn` = anything).
#[derive(Debug, Clone, PartialEq)]
enum SType {
    Dyn,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    List(Box<SType>),
    Map(Box<SType>, Box<SType>),
    Type,
}

impl SType {
    fn of_value(value: &CelValue) -> SType {
        match value {
            CelValue::Null => SType::Null,
            CelValue::Bool(_) => SType::Bool,
            CelValue::Int(_) => SType::Int,
            CelValue::Uint(_) => SType::Uint,
            CelValue::Double(_) => SType::Double,
            CelValue::String(_) => SType::String,
            CelValue::Bytes(_) => SType::Bytes,
            CelValue::List(_) => SType::List(Box::new(SType::Dyn)),
            CelValue::Map(_) => SType::Map(Box::new(SType::Dyn), Box::new(SType::Dyn)),
            CelValue::Type(_) => SType::Type,
        }
    }

    /// The type of an aggregate holding values of both types (mixed literals become `dyn`).
    fn join(&self, other: &SType) -> SType {
        match (self, other) {
            (a, b) if a == b => a.clone(),
            (SType::List(a), SType::List(b)) => SType::List(Box::new(a.join(b))),
            (SType::Map(k1, v1), SType::Map(k2, v2)) => SType::Map(Box::new(k1.join(k2)), Box::new(v1.join(v2))),
            _ => SType::Dyn,
        }
    }

    /// Whether values of the two types may be equal (equality, `in`, `?:` branches).
    fn compatible(&self, other: &SType) -> bool {
        match (self, other) {
            (SType::Dyn, _) | (_, SType::Dyn) => true,
            (SType::List(a), SType::List(b)) => a.compatible(b),
            (SType::Map(k1, v1), SType::Map(k2, v2)) => k1.compatible(k2) && v1.compatible(v2),
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for SType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SType::Dyn => f.write_str("dyn"),
            SType::Null => f.write_str("null_type"),
            SType::Bool => f.write_str("bool"),
            SType::Int => f.write_str("int"),
            SType::Uint => f.write_str("uint"),
            SType::Double => f.write_str("double"),
            SType::String => f.write_str("string"),
            SType::Bytes => f.write_str("bytes"),
            SType::List(elem) => write!(f, "list({elem})"),
            SType::Map(key, value) => write!(f, "map({key}, {value})"),
            SType::Type => f.write_str("type"),
        }
    }
}

/// The functions of the standard environment that this evaluator does not implement.
const UNSUPPORTED_FUNCTIONS: [&str; 13] = [
    "matches",
    "timestamp",
    "duration",
    "getFullYear",
    "getMonth",
    "getDate",
    "getDayOfMonth",
    "getDayOfWeek",
    "getDayOfYear",
    "getHours",
    "getMinutes",
    "getSeconds",
    "getMilliseconds",
];

const FUNCTIONS: [&str; 13] = [
    "size",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "dyn",
    "type",
    "parseJson",
    "contains",
    "startsWith",
    "endsWith",
];

struct Checker {
    scopes: Vec<(String, SType)>,
}

impl Checker {
    fn ident(&self, name: &str) -> SType {
        if let Some((_, t)) = self.scopes.iter().rev().find(|(n, _)| n == name) {
            return t.clone();
        }
        if CelType::from_name(name).is_some() { SType::Type } else { SType::Dyn }
    }

    // One small function per node kind keeps the stack used per nesting level small.
    fn check(&mut self, e: &Expr) -> Result<SType, Fail> {
        let pos = e.pos;
        match &e.kind {
            ExprKind::Literal(v) => Ok(SType::of_value(v)),
            ExprKind::Ident(name) => Ok(self.ident(name)),
            ExprKind::List(items) => self.check_list(items),
            ExprKind::Map(entries) => self.check_map(entries),
            ExprKind::Select { operand, .. } => self.check_select(operand, pos, false),
            ExprKind::Has { operand, .. } => self.check_select(operand, pos, true),
            ExprKind::Index { operand, index } => self.check_index(operand, index, pos),
            ExprKind::Not(operand) => self.check_unary(operand, pos, true),
            ExprKind::Neg(operand) => self.check_unary(operand, pos, false),
            ExprKind::Binary { op, lhs, rhs } => self.check_binary(*op, lhs, rhs, pos),
            ExprKind::And(terms) => self.check_logic(terms, " && ", pos),
            ExprKind::Or(terms) => self.check_logic(terms, " || ", pos),
            ExprKind::Ternary { cond, then, otherwise } => self.check_ternary(cond, then, otherwise, pos),
            ExprKind::Call { function, target, args } => self.check_call(function, target.as_deref(), args, pos),
            ExprKind::Comprehension { kind, range, var, filter, body } => {
                self.check_comprehension(*kind, range, var, filter.as_deref(), body)
            }
        }
    }

    #[inline(never)]
    fn check_list(&mut self, items: &[Expr]) -> Result<SType, Fail> {
        let mut elem: Option<SType> = None;
        for item in items {
            let t = self.check(item)?;
            elem = Some(match elem {
                None => t,
                Some(prev) => prev.join(&t),
            });
        }
        Ok(SType::List(Box::new(elem.unwrap_or(SType::Dyn))))
    }

    #[inline(never)]
    fn check_map(&mut self, entries: &[(Expr, Expr)]) -> Result<SType, Fail> {
        let mut types: Option<(SType, SType)> = None;
        for (key, value) in entries {
            let k = self.check(key)?;
            let v = self.check(value)?;
            types = Some(match types {
                None => (k, v),
                Some((pk, pv)) => (pk.join(&k), pv.join(&v)),
            });
        }
        let (k, v) = types.unwrap_or((SType::Dyn, SType::Dyn));
        Ok(SType::Map(Box::new(k), Box::new(v)))
    }

    #[inline(never)]
    fn check_select(&mut self, operand: &Expr, pos: usize, has: bool) -> Result<SType, Fail> {
        let field_type = match self.check(operand)? {
            SType::Dyn => SType::Dyn,
            SType::Map(_, value) => *value,
            other => return Err(Fail::Check(pos, format!("type '{other}' does not support field selection"))),
        };
        Ok(if has { SType::Bool } else { field_type })
    }

    #[inline(never)]
    fn check_index(&mut self, operand: &Expr, index: &Expr, pos: usize) -> Result<SType, Fail> {
        let base = self.check(operand)?;
        let key = self.check(index)?;
        match &base {
            SType::Dyn => Ok(SType::Dyn),
            SType::List(elem) if matches!(key, SType::Int | SType::Dyn) => Ok((**elem).clone()),
            SType::Map(k, v) if k.compatible(&key) => Ok((**v).clone()),
            _ => Err(no_overload_at(pos, format!("{base}[{key}]"))),
        }
    }

    #[inline(never)]
    fn check_unary(&mut self, operand: &Expr, pos: usize, not: bool) -> Result<SType, Fail> {
        match (not, self.check(operand)?) {
            (true, SType::Bool | SType::Dyn) => Ok(SType::Bool),
            (false, t @ (SType::Int | SType::Double | SType::Dyn)) => Ok(t),
            (true, other) => Err(no_overload_at(pos, format!("!{other}"))),
            (false, other) => Err(no_overload_at(pos, format!("-{other}"))),
        }
    }

    #[inline(never)]
    fn check_binary(&mut self, op: BinOp, lhs: &Expr, rhs: &Expr, pos: usize) -> Result<SType, Fail> {
        let l = self.check(lhs)?;
        let r = self.check(rhs)?;
        binary_type(op, &l, &r).ok_or_else(|| no_overload_at(pos, format!("{l} {} {r}", op.symbol())))
    }

    #[inline(never)]
    fn check_logic(&mut self, terms: &[Expr], op: &str, pos: usize) -> Result<SType, Fail> {
        let types = terms.iter().map(|t| self.check(t)).collect::<Result<Vec<_>, _>>()?;
        if types.iter().all(|t| matches!(t, SType::Bool | SType::Dyn)) {
            Ok(SType::Bool)
        } else {
            Err(no_overload_at(pos, types.iter().map(ToString::to_string).collect::<Vec<_>>().join(op)))
        }
    }

    #[inline(never)]
    fn check_ternary(&mut self, cond: &Expr, then: &Expr, otherwise: &Expr, pos: usize) -> Result<SType, Fail> {
        let c = self.check(cond)?;
        let a = self.check(then)?;
        let b = self.check(otherwise)?;
        if matches!(c, SType::Bool | SType::Dyn) && a.compatible(&b) {
            Ok(a.join(&b))
        } else {
            Err(no_overload_at(pos, format!("{c} ? {a} : {b}")))
        }
    }

    #[inline(never)]
    fn check_call(&mut self, function: &str, target: Option<&Expr>, args: &[Expr], pos: usize) -> Result<SType, Fail> {
        let target = match target {
            Some(t) => Some(self.check(t)?),
            None => None,
        };
        let args = args.iter().map(|a| self.check(a)).collect::<Result<Vec<_>, _>>()?;
        call_type(function, target.as_ref(), &args, pos)
    }

    #[inline(never)]
    fn check_comprehension(
        &mut self,
        kind: Macro,
        range: &Expr,
        var: &str,
        filter: Option<&Expr>,
        body: &Expr,
    ) -> Result<SType, Fail> {
        let var_type = match self.check(range)? {
            SType::List(elem) => *elem,
            SType::Map(key, _) => *key,
            SType::Dyn => SType::Dyn,
            other => {
                return Err(Fail::Check(
                    range.pos,
                    format!(
                        "expression of type '{other}' cannot be the range of a comprehension (must be list, map, or dynamic)"
                    ),
                ));
            }
        };
        self.scopes.push((var.to_owned(), var_type.clone()));
        let result = self.check_comprehension_body(kind, var_type, filter, body);
        self.scopes.pop();
        result
    }

    fn check_comprehension_body(
        &mut self,
        kind: Macro,
        var_type: SType,
        filter: Option<&Expr>,
        body: &Expr,
    ) -> Result<SType, Fail> {
        let predicate = |t: &SType, at: &Expr| {
            if matches!(t, SType::Bool | SType::Dyn) {
                Ok(())
            } else {
                Err(Fail::Check(at.pos, format!("the predicate of {}() must be a bool, not {t}", kind.name())))
            }
        };
        if let Some(filter) = filter {
            let t = self.check(filter)?;
            predicate(&t, filter)?;
        }
        let t = self.check(body)?;
        match kind {
            Macro::Map => Ok(SType::List(Box::new(t))),
            Macro::Filter => {
                predicate(&t, body)?;
                Ok(SType::List(Box::new(var_type)))
            }
            Macro::All | Macro::Exists | Macro::ExistsOne => {
                predicate(&t, body)?;
                Ok(SType::Bool)
            }
        }
    }
}

fn no_overload_at(pos: usize, signature: String) -> Fail {
    Fail::Check(pos, format!("no such overload: {signature}"))
}

/// The result type of a binary operator, `None` when no overload can match.
fn binary_type(op: BinOp, l: &SType, r: &SType) -> Option<SType> {
    let numeric = |t: &SType| matches!(t, SType::Int | SType::Uint | SType::Double);
    let same = |accept: &dyn Fn(&SType) -> bool| -> Option<SType> {
        match (l, r) {
            (SType::Dyn, SType::Dyn) => Some(SType::Dyn),
            (SType::Dyn, t) | (t, SType::Dyn) => accept(t).then(|| t.clone()),
            (a, b) if a == b && accept(a) => Some(a.clone()),
            _ => None,
        }
    };
    match op {
        BinOp::Add => match (l, r) {
            (SType::List(a), SType::List(b)) => a.compatible(b).then(|| SType::List(Box::new(a.join(b)))),
            _ => same(&|t| numeric(t) || matches!(t, SType::String | SType::Bytes | SType::List(_))),
        },
        BinOp::Sub | BinOp::Mul | BinOp::Div => same(&numeric),
        BinOp::Rem => same(&|t| matches!(t, SType::Int | SType::Uint)),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            same(&|t| numeric(t) || matches!(t, SType::Bool | SType::String | SType::Bytes)).map(|_| SType::Bool)
        }
        BinOp::Eq | BinOp::Ne => l.compatible(r).then_some(SType::Bool),
        BinOp::In => match r {
            SType::Dyn => Some(SType::Bool),
            SType::List(elem) => l.compatible(elem).then_some(SType::Bool),
            SType::Map(key, _) => l.compatible(key).then_some(SType::Bool),
            _ => None,
        },
    }
}

/// The result type of a call, or why no overload matches.
fn call_type(name: &str, target: Option<&SType>, args: &[SType], pos: usize) -> Result<SType, Fail> {
    let ok = |accepted: bool, result: SType| {
        if accepted {
            Ok(result)
        } else {
            let arg_list = args.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            let signature = match target {
                Some(t) => format!("{t}.{name}({arg_list})"),
                None => format!("{name}({arg_list})"),
            };
            Err(Fail::Check(pos, format!("no such overload: {signature}")))
        }
    };
    let scalar = |t: &SType| matches!(t, SType::Dyn | SType::Int | SType::Uint | SType::Double | SType::String);
    match (name, target, args) {
        ("size", None, [a]) | ("size", Some(a), []) => {
            ok(matches!(a, SType::Dyn | SType::String | SType::Bytes | SType::List(_) | SType::Map(..)), SType::Int)
        }
        ("int", None, [a]) => ok(scalar(a), SType::Int),
        ("uint", None, [a]) => ok(scalar(a), SType::Uint),
        ("double", None, [a]) => ok(scalar(a), SType::Double),
        ("string", None, [a]) => ok(scalar(a) || matches!(a, SType::Bool | SType::Bytes), SType::String),
        ("bool", None, [a]) => ok(matches!(a, SType::Dyn | SType::Bool | SType::String), SType::Bool),
        ("bytes", None, [a]) => ok(matches!(a, SType::Dyn | SType::Bytes | SType::String), SType::Bytes),
        ("dyn", None, [_]) => Ok(SType::Dyn),
        ("type", None, [_]) => Ok(SType::Type),
        ("parseJson", None, [a]) => ok(matches!(a, SType::Dyn | SType::String), SType::Dyn),
        ("contains" | "startsWith" | "endsWith", Some(t), [a]) => {
            ok(matches!(t, SType::Dyn | SType::String) && matches!(a, SType::Dyn | SType::String), SType::Bool)
        }
        ("matches", ..) => Err(Fail::Unsupported("the matches() function (RE2 regular expressions)".to_owned())),
        (n, ..) if UNSUPPORTED_FUNCTIONS.contains(&n) => {
            Err(Fail::Unsupported(format!("the {n}() function (timestamps and durations)")))
        }
        (n, ..) if FUNCTIONS.contains(&n) => ok(false, SType::Dyn),
        (n, ..) => Err(Fail::Check(pos, format!("undeclared reference to '{n}'"))),
    }
}

// ---------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------

struct Evaluator<'a> {
    vars: &'a Activation,
    /// Comprehension variables, innermost last.
    scopes: Vec<(String, CelValue)>,
    cost: u64,
}

impl Evaluator<'_> {
    fn charge(&mut self, units: u64) -> Result<(), CelError> {
        self.cost = self.cost.saturating_add(units);
        if self.cost > MAX_EVAL_COST { Err(CelError::CostLimit { limit: MAX_EVAL_COST }) } else { Ok(()) }
    }

    fn lookup(&self, name: &str) -> Option<&CelValue> {
        self.scopes.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v).or_else(|| self.vars.vars.get(name))
    }

    /// The value of a variable path (`inputs.parameter_values['k']`) without copying the
    /// containers on the way; `None` when it is not such a path or a step is missing (the
    /// full evaluation then reports the error).
    fn place(&self, e: &Expr) -> Option<&CelValue> {
        match &e.kind {
            ExprKind::Ident(name) => self.lookup(name),
            ExprKind::Select { operand, field } => match self.place(operand)? {
                CelValue::Map(entries) => map_get_str(entries, field),
                _ => None,
            },
            ExprKind::Index { operand, index } => {
                let ExprKind::Literal(key) = &index.kind else {
                    return None;
                };
                match (self.place(operand)?, key) {
                    (CelValue::Map(entries), key) => map_get(entries, key),
                    (CelValue::List(items), CelValue::Int(i)) => usize::try_from(*i).ok().and_then(|i| items.get(i)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    // One small function per node kind keeps the stack used per nesting level small.
    fn eval(&mut self, e: &Expr) -> Result<CelValue, CelError> {
        self.charge(1)?;
        match &e.kind {
            ExprKind::Literal(v) => Ok(v.clone()),
            ExprKind::Ident(name) => self.ident(name),
            ExprKind::List(items) => self.eval_list(items),
            ExprKind::Map(entries) => self.map_literal(entries),
            ExprKind::Select { operand, field } => self.eval_select(e, operand, field),
            ExprKind::Has { operand, field } => self.eval_has(operand, field),
            ExprKind::Index { operand, index } => self.eval_index(e, operand, index),
            ExprKind::Not(operand) => self.eval_unary(operand, true),
            ExprKind::Neg(operand) => self.eval_unary(operand, false),
            ExprKind::Binary { op, lhs, rhs } => self.eval_binary(*op, lhs, rhs),
            ExprKind::And(terms) => self.logic(terms, false),
            ExprKind::Or(terms) => self.logic(terms, true),
            ExprKind::Ternary { cond, then, otherwise } => self.eval_ternary(cond, then, otherwise),
            ExprKind::Call { function, target, args } => self.eval_call(function, target.as_deref(), args),
            ExprKind::Comprehension { kind, range, var, filter, body } => {
                self.eval_comprehension(*kind, range, var, filter.as_deref(), body)
            }
        }
    }

    #[inline(never)]
    fn eval_list(&mut self, items: &[Expr]) -> Result<CelValue, CelError> {
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(self.eval(item)?);
        }
        Ok(CelValue::List(out))
    }

    #[inline(never)]
    fn eval_select(&mut self, e: &Expr, operand: &Expr, field: &str) -> Result<CelValue, CelError> {
        if let Some(v) = self.place(e) {
            return Ok(v.clone());
        }
        let base = self.eval(operand)?;
        select(&base, field)
    }

    #[inline(never)]
    fn eval_has(&mut self, operand: &Expr, field: &str) -> Result<CelValue, CelError> {
        match self.eval(operand)? {
            CelValue::Map(entries) => Ok(CelValue::Bool(map_get_str(&entries, field).is_some())),
            other => Err(CelError::Eval {
                message: format!("has() cannot test the field `{field}` on a value of type {}", other.cel_type()),
            }),
        }
    }

    #[inline(never)]
    fn eval_index(&mut self, e: &Expr, operand: &Expr, index: &Expr) -> Result<CelValue, CelError> {
        if let Some(v) = self.place(e) {
            return Ok(v.clone());
        }
        let base = self.eval(operand)?;
        let key = self.eval(index)?;
        index_value(&base, &key)
    }

    #[inline(never)]
    fn eval_unary(&mut self, operand: &Expr, not: bool) -> Result<CelValue, CelError> {
        match (not, self.eval(operand)?) {
            (true, CelValue::Bool(b)) => Ok(CelValue::Bool(!b)),
            (false, CelValue::Int(i)) => {
                i.checked_neg().map(CelValue::Int).ok_or_else(|| overflow(format!("-({i})"), false))
            }
            (false, CelValue::Double(d)) => Ok(CelValue::Double(-d)),
            (true, other) => Err(overload(format!("!{}", other.cel_type()))),
            (false, other) => Err(overload(format!("-{}", other.cel_type()))),
        }
    }

    #[inline(never)]
    fn eval_binary(&mut self, op: BinOp, lhs: &Expr, rhs: &Expr) -> Result<CelValue, CelError> {
        let l = self.eval(lhs)?;
        let r = self.eval(rhs)?;
        self.binary(op, l, r)
    }

    #[inline(never)]
    fn eval_ternary(&mut self, cond: &Expr, then: &Expr, otherwise: &Expr) -> Result<CelValue, CelError> {
        match self.eval(cond)? {
            CelValue::Bool(true) => self.eval(then),
            CelValue::Bool(false) => self.eval(otherwise),
            other => Err(overload(format!("{} ? _ : _", other.cel_type()))),
        }
    }

    #[inline(never)]
    fn eval_call(&mut self, function: &str, target: Option<&Expr>, args: &[Expr]) -> Result<CelValue, CelError> {
        let target = match target {
            Some(t) => Some(self.eval(t)?),
            None => None,
        };
        let mut values = Vec::with_capacity(args.len());
        for arg in args {
            values.push(self.eval(arg)?);
        }
        call_function(function, target, values)
    }

    #[inline(never)]
    fn eval_comprehension(
        &mut self,
        kind: Macro,
        range: &Expr,
        var: &str,
        filter: Option<&Expr>,
        body: &Expr,
    ) -> Result<CelValue, CelError> {
        let items = match self.eval(range)? {
            CelValue::List(items) => items,
            CelValue::Map(entries) => entries.into_iter().map(|(k, _)| k).collect(),
            other => {
                return Err(CelError::Eval {
                    message: format!(
                        "expression of type '{}' cannot be the range of a comprehension (must be list, map, or dynamic)",
                        other.cel_type()
                    ),
                });
            }
        };
        self.comprehension(kind, items, var, filter, body)
    }

    fn ident(&self, name: &str) -> Result<CelValue, CelError> {
        if let Some(v) = self.lookup(name) {
            return Ok(v.clone());
        }
        if self.vars.unset.iter().any(|n| n == name) {
            return Err(CelError::UnsetVariable { name: name.to_owned() });
        }
        CelType::from_name(name).map(CelValue::Type).ok_or_else(|| CelError::UnknownVariable { name: name.to_owned() })
    }

    fn map_literal(&mut self, entries: &[(Expr, Expr)]) -> Result<CelValue, CelError> {
        let mut out: Vec<(CelValue, CelValue)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let key = self.eval(key)?;
            let value = self.eval(value)?;
            if !matches!(key, CelValue::Int(_) | CelValue::Uint(_) | CelValue::Bool(_) | CelValue::String(_)) {
                return Err(CelError::Eval { message: format!("unsupported map key type: {}", key.cel_type()) });
            }
            if map_get(&out, &key).is_some() {
                return Err(CelError::Eval { message: format!("duplicate key {key} in a map literal") });
            }
            out.push((key, value));
        }
        Ok(CelValue::Map(out))
    }

    /// `&&` (`or == false`) or `||` over `terms`: the deciding value wins over errors in the
    /// other terms, whatever their order; otherwise the first error (or non-bool) is the result.
    fn logic(&mut self, terms: &[Expr], or: bool) -> Result<CelValue, CelError> {
        let mut deferred: Option<CelError> = None;
        for term in terms {
            match self.eval(term) {
                Ok(CelValue::Bool(b)) if b == or => return Ok(CelValue::Bool(or)),
                Ok(CelValue::Bool(_)) => {}
                Err(e @ CelError::CostLimit { .. }) => return Err(e),
                Ok(other) => {
                    if deferred.is_none() {
                        let op = if or { "||" } else { "&&" };
                        deferred = Some(overload(format!("{} {op} bool", other.cel_type())));
                    }
                }
                Err(e) => {
                    if deferred.is_none() {
                        deferred = Some(e);
                    }
                }
            }
        }
        match deferred {
            Some(e) => Err(e),
            None => Ok(CelValue::Bool(!or)),
        }
    }

    fn with_var<T>(&mut self, var: &str, item: CelValue, f: impl FnOnce(&mut Self) -> T) -> (T, CelValue) {
        self.scopes.push((var.to_owned(), item));
        let out = f(self);
        let item = self.scopes.pop().map_or(CelValue::Null, |(_, v)| v);
        (out, item)
    }

    fn comprehension(
        &mut self,
        kind: Macro,
        items: Vec<CelValue>,
        var: &str,
        filter: Option<&Expr>,
        body: &Expr,
    ) -> Result<CelValue, CelError> {
        let not_bool = |v: &CelValue| CelError::Eval {
            message: format!("the predicate of {}() must return a bool, not {}", kind.name(), v.cel_type()),
        };
        match kind {
            Macro::All | Macro::Exists => {
                // all: false decides, exists: true decides; errors lose to the deciding value.
                let decides = kind == Macro::Exists;
                let mut deferred: Option<CelError> = None;
                for item in items {
                    self.charge(1)?;
                    match self.with_var(var, item, |ev| ev.eval(body)).0 {
                        Ok(CelValue::Bool(b)) if b == decides => return Ok(CelValue::Bool(decides)),
                        Ok(CelValue::Bool(_)) => {}
                        Err(e @ CelError::CostLimit { .. }) => return Err(e),
                        Ok(other) => {
                            if deferred.is_none() {
                                deferred = Some(not_bool(&other));
                            }
                        }
                        Err(e) => {
                            if deferred.is_none() {
                                deferred = Some(e);
                            }
                        }
                    }
                }
                match deferred {
                    Some(e) => Err(e),
                    None => Ok(CelValue::Bool(!decides)),
                }
            }
            Macro::ExistsOne => {
                let mut count = 0usize;
                for item in items {
                    self.charge(1)?;
                    match self.with_var(var, item, |ev| ev.eval(body)).0? {
                        CelValue::Bool(true) => count += 1,
                        CelValue::Bool(false) => {}
                        other => return Err(not_bool(&other)),
                    }
                }
                Ok(CelValue::Bool(count == 1))
            }
            Macro::Map => {
                let mut out = Vec::new();
                for item in items {
                    self.charge(1)?;
                    let (mapped, _) = self.with_var(var, item, |ev| {
                        if let Some(filter) = filter {
                            match ev.eval(filter)? {
                                CelValue::Bool(true) => {}
                                CelValue::Bool(false) => return Ok(None),
                                other => return Err(not_bool(&other)),
                            }
                        }
                        ev.eval(body).map(Some)
                    });
                    if let Some(value) = mapped? {
                        out.push(value);
                    }
                }
                Ok(CelValue::List(out))
            }
            Macro::Filter => {
                let mut out = Vec::new();
                for item in items {
                    self.charge(1)?;
                    let (keep, item) = self.with_var(var, item, |ev| ev.eval(body));
                    match keep? {
                        CelValue::Bool(true) => out.push(item),
                        CelValue::Bool(false) => {}
                        other => return Err(not_bool(&other)),
                    }
                }
                Ok(CelValue::List(out))
            }
        }
    }

    fn binary(&mut self, op: BinOp, l: CelValue, r: CelValue) -> Result<CelValue, CelError> {
        let signature = |l: &CelValue, r: &CelValue| format!("{} {} {}", l.cel_type(), op.symbol(), r.cel_type());
        match op {
            BinOp::Eq => Ok(CelValue::Bool(values_equal(&l, &r))),
            BinOp::Ne => Ok(CelValue::Bool(!values_equal(&l, &r))),
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let ordering = compare(&l, &r).ok_or_else(|| overload(signature(&l, &r)))??;
                Ok(CelValue::Bool(match op {
                    BinOp::Lt => ordering == Ordering::Less,
                    BinOp::Le => ordering != Ordering::Greater,
                    BinOp::Gt => ordering == Ordering::Greater,
                    _ => ordering != Ordering::Less,
                }))
            }
            BinOp::In => match &r {
                CelValue::List(items) => Ok(CelValue::Bool(items.iter().any(|x| values_equal(&l, x)))),
                CelValue::Map(entries) => Ok(CelValue::Bool(map_get(entries, &l).is_some())),
                _ => Err(overload(signature(&l, &r))),
            },
            BinOp::Add => match (l, r) {
                (CelValue::String(mut a), CelValue::String(b)) => {
                    self.charge(concat_cost(a.len() + b.len()))?;
                    a.push_str(&b);
                    Ok(CelValue::String(a))
                }
                (CelValue::Bytes(mut a), CelValue::Bytes(b)) => {
                    self.charge(concat_cost(a.len() + b.len()))?;
                    a.extend_from_slice(&b);
                    Ok(CelValue::Bytes(a))
                }
                (CelValue::List(mut a), CelValue::List(b)) => {
                    self.charge(concat_cost(a.len() + b.len()))?;
                    a.extend(b);
                    Ok(CelValue::List(a))
                }
                (l, r) => arithmetic(op, &l, &r).unwrap_or_else(|| Err(overload(signature(&l, &r)))),
            },
            BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => {
                arithmetic(op, &l, &r).unwrap_or_else(|| Err(overload(signature(&l, &r))))
            }
        }
    }
}

fn concat_cost(len: usize) -> u64 {
    u64::try_from(len / 16).unwrap_or(u64::MAX)
}

fn overload(signature: String) -> CelError {
    CelError::NoSuchOverload { signature }
}

fn overflow(operation: String, unsigned: bool) -> CelError {
    CelError::Overflow { operation, unsigned }
}

/// Numeric `+ - * / %`; `None` when the operand types have no overload.
fn arithmetic(op: BinOp, l: &CelValue, r: &CelValue) -> Option<Result<CelValue, CelError>> {
    let text = format!("{l} {} {r}", op.symbol());
    Some(match (l, r) {
        (CelValue::Int(a), CelValue::Int(b)) => {
            let (a, b) = (*a, *b);
            let result = match op {
                BinOp::Add => a.checked_add(b),
                BinOp::Sub => a.checked_sub(b),
                BinOp::Mul => a.checked_mul(b),
                BinOp::Div if b == 0 => return Some(Err(CelError::DivisionByZero)),
                BinOp::Div => a.checked_div(b),
                BinOp::Rem if b == 0 => return Some(Err(CelError::ModulusByZero)),
                BinOp::Rem => a.checked_rem(b),
                _ => return None,
            };
            result.map(CelValue::Int).ok_or_else(|| overflow(text, false))
        }
        (CelValue::Uint(a), CelValue::Uint(b)) => {
            let (a, b) = (*a, *b);
            let result = match op {
                BinOp::Add => a.checked_add(b),
                BinOp::Sub => a.checked_sub(b),
                BinOp::Mul => a.checked_mul(b),
                BinOp::Div if b == 0 => return Some(Err(CelError::DivisionByZero)),
                BinOp::Div => a.checked_div(b),
                BinOp::Rem if b == 0 => return Some(Err(CelError::ModulusByZero)),
                BinOp::Rem => a.checked_rem(b),
                _ => return None,
            };
            result.map(CelValue::Uint).ok_or_else(|| overflow(text, true))
        }
        (CelValue::Double(a), CelValue::Double(b)) => Ok(CelValue::Double(match op {
            BinOp::Add => a + b,
            BinOp::Sub => a - b,
            BinOp::Mul => a * b,
            BinOp::Div => a / b,
            _ => return None,
        })),
        _ => return None,
    })
}

fn is_number(v: &CelValue) -> bool {
    matches!(v, CelValue::Int(_) | CelValue::Uint(_) | CelValue::Double(_))
}

/// Exact ordering of a (non-NaN) double and an int, as cel-go's `compareDoubleInt`.
fn cmp_double_int(d: f64, i: i64) -> Ordering {
    if d < -TWO_POW_63 {
        return Ordering::Less;
    }
    if d >= TWO_POW_63 {
        return Ordering::Greater;
    }
    let whole = d.trunc();
    // In range and whole, so the conversion is exact.
    #[allow(clippy::cast_possible_truncation)]
    let whole_int = whole as i64;
    whole_int.cmp(&i).then(d.partial_cmp(&whole).unwrap_or(Ordering::Equal))
}

/// Exact ordering of a (non-NaN) double and a uint, as cel-go's `compareDoubleUint`.
fn cmp_double_uint(d: f64, u: u64) -> Ordering {
    if d < 0.0 {
        return Ordering::Less;
    }
    if d >= TWO_POW_64 {
        return Ordering::Greater;
    }
    let whole = d.trunc();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let whole_uint = whole as u64;
    whole_uint.cmp(&u).then(d.partial_cmp(&whole).unwrap_or(Ordering::Equal))
}

fn cmp_int_uint(i: i64, u: u64) -> Ordering {
    u64::try_from(i).map_or(Ordering::Less, |i| i.cmp(&u))
}

/// Ordering across `int`, `uint` and `double`; `None` if either is not a number, an error
/// for NaN.
fn numeric_cmp(l: &CelValue, r: &CelValue) -> Option<Result<Ordering, CelError>> {
    if !is_number(l) || !is_number(r) {
        return None;
    }
    if matches!(l, CelValue::Double(d) if d.is_nan()) || matches!(r, CelValue::Double(d) if d.is_nan()) {
        return Some(Err(CelError::Eval { message: "NaN values cannot be ordered".to_owned() }));
    }
    Some(Ok(match (l, r) {
        (CelValue::Int(a), CelValue::Int(b)) => a.cmp(b),
        (CelValue::Uint(a), CelValue::Uint(b)) => a.cmp(b),
        (CelValue::Double(a), CelValue::Double(b)) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
        (CelValue::Int(a), CelValue::Uint(b)) => cmp_int_uint(*a, *b),
        (CelValue::Uint(a), CelValue::Int(b)) => cmp_int_uint(*b, *a).reverse(),
        (CelValue::Double(a), CelValue::Int(b)) => cmp_double_int(*a, *b),
        (CelValue::Int(a), CelValue::Double(b)) => cmp_double_int(*b, *a).reverse(),
        (CelValue::Double(a), CelValue::Uint(b)) => cmp_double_uint(*a, *b),
        (CelValue::Uint(a), CelValue::Double(b)) => cmp_double_uint(*b, *a).reverse(),
        _ => return None,
    }))
}

/// CEL ordering (`<` and friends); `None` when the operand types have no overload.
fn compare(l: &CelValue, r: &CelValue) -> Option<Result<Ordering, CelError>> {
    match (l, r) {
        (CelValue::Bool(a), CelValue::Bool(b)) => Some(Ok(a.cmp(b))),
        (CelValue::String(a), CelValue::String(b)) => Some(Ok(a.cmp(b))),
        (CelValue::Bytes(a), CelValue::Bytes(b)) => Some(Ok(a.cmp(b))),
        _ => numeric_cmp(l, r),
    }
}

/// CEL equality: heterogeneous (values of different types are unequal, numbers compare by
/// value across `int`, `uint` and `double`, NaN equals nothing).
fn values_equal(l: &CelValue, r: &CelValue) -> bool {
    match (l, r) {
        (CelValue::Null, CelValue::Null) => true,
        (CelValue::Bool(a), CelValue::Bool(b)) => a == b,
        (CelValue::String(a), CelValue::String(b)) => a == b,
        (CelValue::Bytes(a), CelValue::Bytes(b)) => a == b,
        (CelValue::Type(a), CelValue::Type(b)) => a == b,
        (CelValue::List(a), CelValue::List(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| values_equal(x, y))
        }
        (CelValue::Map(a), CelValue::Map(b)) => {
            a.len() == b.len() && a.iter().all(|(k, v)| map_get(b, k).is_some_and(|w| values_equal(v, w)))
        }
        _ => matches!(numeric_cmp(l, r), Some(Ok(Ordering::Equal))),
    }
}

fn map_get<'m>(entries: &'m [(CelValue, CelValue)], key: &CelValue) -> Option<&'m CelValue> {
    entries.iter().find(|(k, _)| values_equal(k, key)).map(|(_, v)| v)
}

fn map_get_str<'m>(entries: &'m [(CelValue, CelValue)], key: &str) -> Option<&'m CelValue> {
    entries.iter().find(|(k, _)| matches!(k, CelValue::String(s) if s == key)).map(|(_, v)| v)
}

fn no_such_key(entries: &[(CelValue, CelValue)], key: &CelValue) -> CelError {
    const SHOWN: usize = 12;
    let mut known: Vec<String> = entries.iter().take(SHOWN).map(|(k, _)| k.to_string()).collect();
    if entries.len() > SHOWN {
        known.push(format!("… ({} more)", entries.len() - SHOWN));
    }
    CelError::NoSuchKey { key: key.to_string(), known }
}

fn select(base: &CelValue, field: &str) -> Result<CelValue, CelError> {
    match base {
        CelValue::Map(entries) => map_get_str(entries, field)
            .cloned()
            .ok_or_else(|| no_such_key(entries, &CelValue::String(field.to_owned()))),
        other => {
            Err(CelError::Eval { message: format!("type '{}' does not support field selection", other.cel_type()) })
        }
    }
}

fn index_value(base: &CelValue, key: &CelValue) -> Result<CelValue, CelError> {
    match base {
        CelValue::List(items) => {
            let unsupported = || CelError::Eval { message: format!("unsupported index value {key} in list") };
            let index = match key {
                CelValue::Int(i) => *i,
                CelValue::Uint(u) => i64::try_from(*u).map_err(|_| unsupported())?,
                CelValue::Double(d) if d.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(d) => {
                    #[allow(clippy::cast_possible_truncation)]
                    let i = *d as i64;
                    i
                }
                CelValue::Double(_) => return Err(unsupported()),
                other => {
                    return Err(CelError::Eval {
                        message: format!("unsupported index type '{}' in list", other.cel_type()),
                    });
                }
            };
            usize::try_from(index)
                .ok()
                .and_then(|i| items.get(i))
                .cloned()
                .ok_or(CelError::IndexOutOfRange { index, size: items.len() })
        }
        CelValue::Map(entries) => {
            if !matches!(
                key,
                CelValue::Int(_) | CelValue::Uint(_) | CelValue::Double(_) | CelValue::Bool(_) | CelValue::String(_)
            ) {
                return Err(CelError::Eval { message: format!("unsupported map key type: {}", key.cel_type()) });
            }
            map_get(entries, key).cloned().ok_or_else(|| no_such_key(entries, key))
        }
        other => Err(overload(format!("{}[{}]", other.cel_type(), key.cel_type()))),
    }
}

// ---------------------------------------------------------------------------------------
// Functions
// ---------------------------------------------------------------------------------------

fn call_function(name: &str, target: Option<CelValue>, args: Vec<CelValue>) -> Result<CelValue, CelError> {
    match (target, <[CelValue; 1]>::try_from(args)) {
        (None, Ok([arg])) => call_global(name, arg),
        (Some(receiver), Ok([arg])) => call_method(name, &receiver, &arg),
        (Some(receiver), Err(args)) if args.is_empty() && name == "size" => size_of(&receiver),
        (target, Err(args)) => {
            let arg_list = args.iter().map(|a| a.cel_type().name()).collect::<Vec<_>>().join(", ");
            Err(overload(match target {
                Some(t) => format!("{}.{name}({arg_list})", t.cel_type()),
                None => format!("{name}({arg_list})"),
            }))
        }
    }
}

fn call_global(name: &str, arg: CelValue) -> Result<CelValue, CelError> {
    match name {
        "size" => size_of(&arg),
        "int" => to_int(arg),
        "uint" => to_uint(arg),
        "double" => to_double(arg),
        "string" => to_string_value(arg),
        "bool" => to_bool(arg),
        "bytes" => match arg {
            CelValue::Bytes(_) => Ok(arg),
            CelValue::String(s) => Ok(CelValue::Bytes(s.into_bytes())),
            other => Err(overload(format!("bytes({})", other.cel_type()))),
        },
        "dyn" => Ok(arg),
        "type" => Ok(CelValue::Type(arg.cel_type())),
        "parseJson" => match arg {
            CelValue::String(text) => serde_json::from_str::<Json>(&text)
                .map(|json| CelValue::from_json(&json))
                .map_err(|e| CelError::ParseJson { message: e.to_string() }),
            other => Err(overload(format!("parseJson({})", other.cel_type()))),
        },
        _ => Err(overload(format!("{name}({})", arg.cel_type()))),
    }
}

fn call_method(name: &str, receiver: &CelValue, arg: &CelValue) -> Result<CelValue, CelError> {
    match (name, receiver, arg) {
        ("contains", CelValue::String(s), CelValue::String(sub)) => Ok(CelValue::Bool(s.contains(sub.as_str()))),
        ("startsWith", CelValue::String(s), CelValue::String(prefix)) => {
            Ok(CelValue::Bool(s.starts_with(prefix.as_str())))
        }
        ("endsWith", CelValue::String(s), CelValue::String(suffix)) => Ok(CelValue::Bool(s.ends_with(suffix.as_str()))),
        _ => Err(overload(format!("{}.{name}({})", receiver.cel_type(), arg.cel_type()))),
    }
}

fn size_of(value: &CelValue) -> Result<CelValue, CelError> {
    let size = match value {
        CelValue::String(s) => s.chars().count(),
        CelValue::Bytes(b) => b.len(),
        CelValue::List(items) => items.len(),
        CelValue::Map(entries) => entries.len(),
        other => return Err(overload(format!("size({})", other.cel_type()))),
    };
    Ok(CelValue::Int(i64::try_from(size).unwrap_or(i64::MAX)))
}

fn conversion_error(value: &CelValue, target: CelType, reason: &str) -> CelError {
    CelError::Conversion { value: value.described(), target: target.name().to_owned(), reason: reason.to_owned() }
}

fn int_error_reason(e: &std::num::ParseIntError) -> &'static str {
    match e.kind() {
        std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => "value out of range",
        _ => "invalid syntax",
    }
}

fn to_int(value: CelValue) -> Result<CelValue, CelError> {
    match value {
        CelValue::Int(_) => Ok(value),
        CelValue::Uint(u) => i64::try_from(u).map(CelValue::Int).map_err(|_| overflow(format!("int({u}u)"), false)),
        CelValue::Double(d) => {
            if d.is_nan() || d <= -TWO_POW_63 || d >= TWO_POW_63 {
                return Err(overflow(format!("int({})", CelValue::Double(d)), false));
            }
            #[allow(clippy::cast_possible_truncation)]
            let truncated = d as i64;
            Ok(CelValue::Int(truncated))
        }
        CelValue::String(ref s) => s
            .parse::<i64>()
            .map(CelValue::Int)
            .map_err(|e| conversion_error(&value, CelType::Int, int_error_reason(&e))),
        other => Err(overload(format!("int({})", other.cel_type()))),
    }
}

fn to_uint(value: CelValue) -> Result<CelValue, CelError> {
    match value {
        CelValue::Uint(_) => Ok(value),
        CelValue::Int(i) => u64::try_from(i).map(CelValue::Uint).map_err(|_| overflow(format!("uint({i})"), true)),
        CelValue::Double(d) => {
            if !(0.0..TWO_POW_64).contains(&d) {
                return Err(overflow(format!("uint({})", CelValue::Double(d)), true));
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let truncated = d as u64;
            Ok(CelValue::Uint(truncated))
        }
        CelValue::String(ref s) if s.starts_with('+') => Err(conversion_error(&value, CelType::Uint, "invalid syntax")),
        CelValue::String(ref s) => s
            .parse::<u64>()
            .map(CelValue::Uint)
            .map_err(|e| conversion_error(&value, CelType::Uint, int_error_reason(&e))),
        other => Err(overload(format!("uint({})", other.cel_type()))),
    }
}

/// Go's `strconv.ParseFloat(s, 64)`: decimal notation, `inf`/`infinity`/`nan` in any case;
/// out-of-range values are errors, not infinities.
fn go_parse_float(s: &str) -> Result<f64, &'static str> {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = unsigned.to_ascii_lowercase();
    if lower == "nan" {
        return if unsigned.len() == s.len() { Ok(f64::NAN) } else { Err("invalid syntax") };
    }
    let infinity = lower == "inf" || lower == "infinity";
    if !infinity && !unsigned.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-')) {
        return Err("invalid syntax");
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_infinite() && !infinity => Err("value out of range"),
        Ok(v) => Ok(v),
        Err(_) => Err("invalid syntax"),
    }
}

fn to_double(value: CelValue) -> Result<CelValue, CelError> {
    #[allow(clippy::cast_precision_loss)]
    match value {
        CelValue::Double(_) => Ok(value),
        CelValue::Int(i) => Ok(CelValue::Double(i as f64)),
        CelValue::Uint(u) => Ok(CelValue::Double(u as f64)),
        CelValue::String(ref s) => {
            go_parse_float(s).map(CelValue::Double).map_err(|reason| conversion_error(&value, CelType::Double, reason))
        }
        other => Err(overload(format!("double({})", other.cel_type()))),
    }
}

fn to_string_value(value: CelValue) -> Result<CelValue, CelError> {
    match value {
        CelValue::String(_) => Ok(value),
        CelValue::Int(i) => Ok(CelValue::String(i.to_string())),
        CelValue::Uint(u) => Ok(CelValue::String(u.to_string())),
        CelValue::Double(d) => Ok(CelValue::String(crate::ir::go_format_g(d))),
        CelValue::Bool(b) => Ok(CelValue::String(b.to_string())),
        CelValue::Bytes(b) => String::from_utf8(b).map(CelValue::String).map_err(|e| {
            conversion_error(&CelValue::Bytes(e.into_bytes()), CelType::String, "the bytes are not valid UTF-8")
        }),
        other => Err(overload(format!("string({})", other.cel_type()))),
    }
}

fn to_bool(value: CelValue) -> Result<CelValue, CelError> {
    match value {
        CelValue::Bool(_) => Ok(value),
        CelValue::String(ref s) => match s.as_str() {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(CelValue::Bool(true)),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(CelValue::Bool(false)),
            _ => Err(conversion_error(&value, CelType::Bool, "invalid syntax")),
        },
        other => Err(overload(format!("bool({})", other.cel_type()))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn eval(expr: &str) -> Result<CelValue, CelError> {
        Program::parse(expr)?.eval(&Activation::new())
    }

    fn value(expr: &str) -> CelValue {
        eval(expr).unwrap_or_else(|e| panic!("`{expr}` failed: {e}"))
    }

    fn error(expr: &str) -> CelError {
        match eval(expr) {
            Ok(v) => panic!("`{expr}` evaluated to {v}, expected an error"),
            Err(e) => e,
        }
    }

    fn params(value: Json) -> serde_json::Map<String, Json> {
        match value {
            Json::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn list(items: Vec<CelValue>) -> CelValue {
        CelValue::List(items)
    }

    fn s(text: &str) -> CelValue {
        CelValue::String(text.to_owned())
    }

    // The three conditions of p2_control_flow.yaml, exactly as compiled (YAML folding undone).
    const IS_HEADS: &str = "inputs.parameter_values['pipelinechannel--flip-Output'] == 'heads'";
    const IS_TAILS: &str = "!(inputs.parameter_values['pipelinechannel--flip-Output'] == 'heads') && inputs.parameter_values['pipelinechannel--flip-Output'] == 'tails'";
    const BIG_TOTAL: &str = "int(inputs.parameter_values['pipelinechannel--total-Output']) > int(inputs.parameter_values['pipelinechannel--threshold'])";

    #[test]
    fn p2_control_flow_conditions_pick_the_right_branch() {
        let cases = [
            (IS_HEADS, json!({"pipelinechannel--flip-Output": "heads"}), true),
            (IS_HEADS, json!({"pipelinechannel--flip-Output": "tails"}), false),
            (IS_TAILS, json!({"pipelinechannel--flip-Output": "heads"}), false),
            (IS_TAILS, json!({"pipelinechannel--flip-Output": "tails"}), true),
            (IS_TAILS, json!({"pipelinechannel--flip-Output": "edge"}), false),
            (IS_HEADS, json!({"pipelinechannel--flip-Output": "Heads"}), false),
            // Integer outputs arrive as doubles (protobuf Value); int() truncates them.
            (BIG_TOTAL, json!({"pipelinechannel--total-Output": 30.0, "pipelinechannel--threshold": 10.0}), true),
            (BIG_TOTAL, json!({"pipelinechannel--total-Output": 30, "pipelinechannel--threshold": 10}), true),
            (BIG_TOTAL, json!({"pipelinechannel--total-Output": 30, "pipelinechannel--threshold": 30}), false),
            (BIG_TOTAL, json!({"pipelinechannel--total-Output": 30.9, "pipelinechannel--threshold": 30}), false),
            (BIG_TOTAL, json!({"pipelinechannel--total-Output": 5, "pipelinechannel--threshold": 30}), false),
            (BIG_TOTAL, json!({"pipelinechannel--total-Output": -1, "pipelinechannel--threshold": -2}), true),
        ];
        for (expr, inputs, expected) in cases {
            let got = eval_condition(expr, &params(inputs.clone()));
            assert_eq!(got, Ok(expected), "{expr} with {inputs}");
        }
    }

    #[test]
    fn other_shapes_the_kfp_compiler_emits() {
        let inputs = params(json!({
            "pipelinechannel--flag": true,
            "pipelinechannel--score": 0.75,
            "pipelinechannel--th": 0.5,
            "pipelinechannel--count": 3,
            "pipelinechannel--name": "x",
        }));
        let cases = [
            ("inputs.parameter_values['pipelinechannel--flag'] == true", true),
            ("inputs.parameter_values['pipelinechannel--flag'] == false", false),
            ("inputs.parameter_values['pipelinechannel--flag'] != true", false),
            (
                "inputs.parameter_values['pipelinechannel--score'] > inputs.parameter_values['pipelinechannel--th']",
                true,
            ),
            ("inputs.parameter_values['pipelinechannel--score'] > 0.8", false),
            ("inputs.parameter_values['pipelinechannel--score'] >= 0.75", true),
            // Dynamic double against int literal: heterogeneous comparison at runtime.
            ("inputs.parameter_values['pipelinechannel--count'] == 3", true),
            ("inputs.parameter_values['pipelinechannel--count'] < 4", true),
            ("int(inputs.parameter_values['pipelinechannel--count']) == 3", true),
            ("inputs.parameter_values['pipelinechannel--name'] in ['x', 'y']", true),
            (
                "!(inputs.parameter_values['pipelinechannel--flag'] == true) && inputs.parameter_values['pipelinechannel--score'] < 0.5",
                false,
            ),
            (
                "inputs.parameter_values['pipelinechannel--flag'] == true || inputs.parameter_values['pipelinechannel--missing'] == 1",
                true,
            ),
        ];
        for (expr, expected) in cases {
            assert_eq!(eval_condition(expr, &inputs), Ok(expected), "{expr}");
        }
    }

    #[test]
    fn values_with_quotes_backslashes_and_unicode_are_data() {
        let cases = [
            ("it's", r#"inputs.parameter_values['v'] == "it's""#),
            ("it's", r"inputs.parameter_values['v'] == 'it\'s'"),
            ("a\\b", r"inputs.parameter_values['v'] == 'a\\b'"),
            ("a\\b", r"inputs.parameter_values['v'] == r'a\b'"),
            ("say \"hi\"", r#"inputs.parameter_values['v'] == 'say "hi"'"#),
            ("naïve ☃ 😀", "inputs.parameter_values['v'] == 'naïve ☃ 😀'"),
            ("naïve ☃ 😀", r"inputs.parameter_values['v'] == 'na\u00efve \u2603 \U0001F600'"),
            ("x' == 'x' || 'a", r"inputs.parameter_values['v'] == 'x\' == \'x\' || \'a'"),
            ("line1\nline2", r"inputs.parameter_values['v'] == 'line1\nline2'"),
            ("tab\there", r"inputs.parameter_values['v'] == 'tab\there'"),
            ("'); import os; ('", r#"inputs.parameter_values['v'] == "'); import os; ('""#),
        ];
        for (stored, expr) in cases {
            let inputs = params(json!({ "v": stored }));
            assert_eq!(eval_condition(expr, &inputs), Ok(true), "{expr} with {stored:?}");
            // A value that only looks like the expression's text does not match.
            let other = params(json!({ "v": format!("{stored}!") }));
            assert_eq!(eval_condition(expr, &other), Ok(false), "{expr} with {stored:?}!");
        }
        // A value that is CEL code is never evaluated.
        let inputs = params(json!({ "v": "true || true" }));
        assert_eq!(eval_condition("inputs.parameter_values['v'] == 'heads'", &inputs), Ok(false));
    }

    #[test]
    fn literals() {
        let cases = [
            ("0", CelValue::Int(0)),
            ("42", CelValue::Int(42)),
            ("-42", CelValue::Int(-42)),
            ("0x1F", CelValue::Int(31)),
            ("-0x10", CelValue::Int(-16)),
            ("017", CelValue::Int(17)),
            ("9223372036854775807", CelValue::Int(i64::MAX)),
            ("-9223372036854775808", CelValue::Int(i64::MIN)),
            ("0u", CelValue::Uint(0)),
            ("42U", CelValue::Uint(42)),
            ("0xFFu", CelValue::Uint(255)),
            ("18446744073709551615u", CelValue::Uint(u64::MAX)),
            ("1.5", CelValue::Double(1.5)),
            ("-1.5", CelValue::Double(-1.5)),
            (".5", CelValue::Double(0.5)),
            ("1e3", CelValue::Double(1000.0)),
            ("1.5E-3", CelValue::Double(0.0015)),
            ("2e+2", CelValue::Double(200.0)),
            ("0.0", CelValue::Double(0.0)),
            ("true", CelValue::Bool(true)),
            ("false", CelValue::Bool(false)),
            ("null", CelValue::Null),
            ("'single'", s("single")),
            ("\"double\"", s("double")),
            ("''", s("")),
            ("'''x''x'''", s("x''x")),
            ("\"\"\"two\nlines\"\"\"", s("two\nlines")),
            ("'\"\"'", s("\"\"")),
            ("b'abc'", CelValue::Bytes(b"abc".to_vec())),
            ("B\"ÿ\"", CelValue::Bytes(vec![195, 191])),
            ("[]", list(vec![])),
            ("[1, 'a', [true],]", list(vec![CelValue::Int(1), s("a"), list(vec![CelValue::Bool(true)])])),
            ("{}", CelValue::Map(vec![])),
            (
                "{'a': 1, 2: 'b', true: null,}",
                CelValue::Map(vec![
                    (s("a"), CelValue::Int(1)),
                    (CelValue::Int(2), s("b")),
                    (CelValue::Bool(true), CelValue::Null),
                ]),
            ),
            ("1 + // a comment\n 2", CelValue::Int(3)),
            ("  \t\r\n 7 \u{c}", CelValue::Int(7)),
        ];
        for (expr, expected) in cases {
            assert_eq!(value(expr), expected, "{expr}");
        }
    }

    #[test]
    fn string_escapes() {
        let cases = [
            (r"'\a\b\f\n\r\t\v'", "\u{7}\u{8}\u{c}\n\r\t\u{b}"),
            (r#"'\\ \' \" \? \`'"#, "\\ ' \" ? `"),
            (r"'\x41\X42'", "AB"),
            (r"'\101\060'", "A0"),
            (r"'\303\277'", "Ã¿"),
            (r"'\377'", "ÿ"),
            (r"'\xFF'", "ÿ"),
            (r"'\u00e9'", "é"),
            (r"'\U0001F600'", "😀"),
            (r"'\ud83d\ude00'", "😀"),
            (r"r'\n\x41'", "\\n\\x41"),
            (r#"R"\d+""#, "\\d+"),
            (r"'''a\nb'''", "a\nb"),
            (r"r'''a\nb'''", "a\\nb"),
            ("'é☃'", "é☃"),
        ];
        for (expr, expected) in cases {
            assert_eq!(value(expr), s(expected), "{expr}");
        }
        let bytes = [
            (r"b'\377'", vec![255u8]),
            (r"b'\xff\x00'", vec![255, 0]),
            (r"b'\303\277'", vec![195, 191]),
            (r"br'\x41'", b"\\x41".to_vec()),
            (r"b'\n'", vec![10]),
        ];
        for (expr, expected) in bytes {
            assert_eq!(value(expr), CelValue::Bytes(expected), "{expr}");
        }
    }

    #[test]
    fn syntax_errors_say_where() {
        let cases = [
            ("1 +", "unexpected end of the expression", 4),
            ("a = b", "unexpected `=` (equality is `==`)", 3),
            ("a & b", "`&&`", 3),
            ("a | b", "`||`", 3),
            ("'open", "unterminated string literal", 1),
            ("'a\nb'", "newline in a string literal", 3),
            (r"'\q'", "invalid escape sequence \\q", 2),
            (r"'\x4'", "expected 2 hexadecimal digits", 2),
            (r"'\400'", "invalid escape sequence \\4", 2),
            (r"'\ud800'", "not a Unicode scalar value", 2),
            (r"b'\u0041'", "not allowed in bytes literals", 3),
            ("1 2", "expected an operator or the end of the expression, found a number", 3),
            ("(1 + 2", "expected `)`", 7),
            ("[1, 2", "expected `,` or `]`", 6),
            ("{'a' 1}", "expected `:`", 6),
            ("f(1,)", "unexpected `)`", 5),
            ("if", "reserved identifier `if`", 1),
            ("a.", "expected a field or method name after `.`", 3),
            ("a.true", "expected a field or method name after `.`", 3),
            ("9223372036854775808", "int literal 9223372036854775808 is out of range", 1),
            ("-9223372036854775809", "int literal -9223372036854775809 is out of range", 1),
            ("18446744073709551616u", "uint literal 18446744073709551616u is out of range", 1),
            ("1e999", "double literal 1e999 is out of range", 1),
            ("a ? b ? c : d : e", "expected `:`", 7),
            ("!-x", "unexpected `-`", 2),
            ("has(a)", "invalid argument to has()", 5),
            ("[1].all(1, true)", "must be a simple name", 9),
            ("#", "unexpected character '#'", 1),
            ("", "unexpected end of the expression", 1),
        ];
        for (expr, message, column) in cases {
            match Program::parse(expr) {
                Err(CelError::Syntax { message: got, column: got_column, .. }) => {
                    assert!(got.contains(message), "{expr:?}: {got:?} does not contain {message:?}");
                    assert_eq!(got_column, column, "{expr:?}: {got}");
                }
                other => panic!("{expr:?}: expected a syntax error, got {other:?}"),
            }
        }
    }

    #[test]
    fn syntax_error_message_shows_a_caret() {
        let e = Program::parse("inputs.parameter_values['x'] === 'a'").unwrap_err();
        assert_eq!(
            e.to_string(),
            "syntax error at line 1, column 32: unexpected `=` (equality is `==`)\n \
             | inputs.parameter_values['x'] === 'a'\n \
             | ...............................^"
        );
        let e = Program::parse("true &&\n  (1 +)").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("syntax error at line 2, column 7: unexpected `)`"), "{text}");
        assert!(text.ends_with(" |   (1 +)\n | ......^"), "{text}");
    }

    #[test]
    fn numbers_compare_across_int_uint_and_double() {
        let cases = [
            ("dyn(1) == 1.0", true),
            ("dyn(1.0) == 1", true),
            ("dyn(1u) == 1", true),
            ("dyn(1) == 1u", true),
            ("dyn(1u) == 1.0", true),
            ("dyn(1) != 1.5", true),
            ("dyn(-1) == 18446744073709551615u", false),
            ("dyn(1) < 1.5", true),
            ("dyn(2) > 1.5", true),
            ("dyn(-1) < 0u", true),
            ("dyn(0u) > -1", true),
            ("dyn(2.5) >= 2u", true),
            ("dyn(-0.5) < 0u", true),
            ("dyn(-0.5) < 0", true),
            ("dyn(0.5) > 0", true),
            ("dyn(-1.5) < -1", true),
            ("dyn(9223372036854775807) < 9223372036854775808.0", true),
            ("dyn(9223372036854775807) == 9223372036854775807.0", false),
            ("dyn(18446744073709551615u) < 18446744073709551616.0", true),
            ("dyn(1e300) > 9223372036854775807", true),
            ("dyn(-1e300) < -9223372036854775808", true),
            ("dyn(0.0) == -0.0", true),
            ("dyn(1) in [1.0, 2.0]", true),
            ("dyn(2.0) in {1: 'a', 2: 'b'}", true),
            ("{1: 'a'}[dyn(1u)] == 'a'", true),
            ("{1: 'a'}[dyn(1.0)] == 'a'", true),
            ("[dyn(1), 2u] == [1.0, 2.0]", true),
            ("{'k': dyn(1)} == {'k': 1.0}", true),
            ("dyn('1') == 1", false),
            ("dyn(null) == 0", false),
            ("dyn([1]) == 1", false),
            ("double('NaN') == double('NaN')", false),
            ("double('NaN') != double('NaN')", true),
            ("1 < 2 && 2u < 3u && 1.5 < 2.5", true),
            ("'a' < 'b' && 'B' < 'a' && b'a' < b'b' && false < true", true),
            ("'abc' < 'abd' && 'ab' < 'abc' && 'é' > 'z'", true),
        ];
        for (expr, expected) in cases {
            assert_eq!(value(expr), CelValue::Bool(expected), "{expr}");
        }
        // Variables from the inputs are dynamic: a double compares with an int literal.
        let vars = Activation::new().with("x", CelValue::Double(30.0)).with("u", CelValue::Uint(7));
        for (expr, expected) in [("x == 30", true), ("x > 29", true), ("x < 30u", false), ("u == 7.0", true)] {
            assert_eq!(Program::parse(expr).and_then(|p| p.eval(&vars)), Ok(CelValue::Bool(expected)), "{expr}");
        }
        let nan = error("double('NaN') < 1.0");
        assert_eq!(nan.to_string(), "NaN values cannot be ordered");
    }

    #[test]
    fn statically_ill_typed_expressions_are_rejected_like_cel_go_does() {
        let cases = [
            ("1 == 1.0", "no such overload: int == double", 3),
            ("1 < 1.5", "no such overload: int < double", 3),
            ("'a' + 1", "no such overload: string + int", 5),
            ("1 + 1u", "no such overload: int + uint", 3),
            ("1 == null", "no such overload: int == null_type", 3),
            ("[1] + ['a']", "no such overload: list(int) + list(string)", 5),
            ("1.5 % 2.0", "no such overload: double % double", 5),
            ("-1u", "no such overload: -uint", 1),
            ("!1", "no such overload: !int", 1),
            ("false && 'a' + 1 == 1", "no such overload: string + int", 14),
            ("1 && true", "no such overload: int && bool", 3),
            ("1 ? 2 : 3", "no such overload: int ? int : int", 3),
            ("true ? 1 : 'a'", "no such overload: bool ? int : string", 6),
            ("'a'.b", "type 'string' does not support field selection", 5),
            ("[1][0u]", "no such overload: list(int)[uint]", 4),
            ("{'a': 1}[1]", "no such overload: map(string, int)[int]", 9),
            ("'abc'[0]", "no such overload: string[int]", 6),
            ("1 in 'abc'", "no such overload: int in string", 3),
            ("'a' in [1, 2]", "no such overload: string in list(int)", 5),
            ("size(1)", "no such overload: size(int)", 1),
            ("int(true)", "no such overload: int(bool)", 1),
            ("'a'.contains(1)", "no such overload: string.contains(int)", 5),
            ("contains('a', 'b')", "no such overload: contains(string, string)", 1),
            ("1.size()", "no such overload: int.size()", 3),
            ("foo(1)", "undeclared reference to 'foo'", 1),
            ("x.lowerAscii()", "undeclared reference to 'lowerAscii'", 3),
            ("[1, 2].all(x, x)", "the predicate of all() must be a bool, not int", 15),
            ("1.all(x, true)", "cannot be the range of a comprehension", 1),
        ];
        for (expr, message, column) in cases {
            match Program::parse(expr) {
                Err(CelError::Check { message: got, column: got_column, snippet, .. }) => {
                    assert!(got.contains(message), "{expr:?}: {got:?} does not contain {message:?}");
                    assert_eq!(got_column, column, "{expr:?}: {got}\n{snippet}");
                }
                other => panic!("{expr:?}: expected a type error, got {other:?}"),
            }
        }
        // Mixed aggregate literals are fine (they are list(dyn) / map(dyn, dyn)).
        assert_eq!(value("[1, 'a'] == [1, 'a']"), CelValue::Bool(true));
        assert_eq!(value("dyn(1) == 1.0 && dyn('a') != 1"), CelValue::Bool(true));
    }

    #[test]
    fn precedence_and_associativity() {
        let cases = [
            ("1 + 2 * 3", CelValue::Int(7)),
            ("(1 + 2) * 3", CelValue::Int(9)),
            ("10 - 4 - 3", CelValue::Int(3)),
            ("100 / 10 / 5", CelValue::Int(2)),
            ("7 % 4 * 2", CelValue::Int(6)),
            ("2 * 3 % 4", CelValue::Int(2)),
            ("-2 * 3", CelValue::Int(-6)),
            ("-(3 - 5)", CelValue::Int(2)),
            ("--5", CelValue::Int(5)),
            ("---5", CelValue::Int(-5)),
            ("1 - -5", CelValue::Int(6)),
            ("1--5", CelValue::Int(6)),
            ("!!true", CelValue::Bool(true)),
            ("!!!true", CelValue::Bool(false)),
            ("!true || true", CelValue::Bool(true)),
            ("true || false && false", CelValue::Bool(true)),
            ("false && true || true", CelValue::Bool(true)),
            ("!(false && true) && !false", CelValue::Bool(true)),
            ("1 < 2 == true", CelValue::Bool(true)),
            ("1 + 2 == 3", CelValue::Bool(true)),
            ("1 + 2 < 2 + 2", CelValue::Bool(true)),
            ("2 in [1, 2] == true", CelValue::Bool(true)),
            ("true ? 1 : 2", CelValue::Int(1)),
            ("false ? 1 : false ? 2 : 3", CelValue::Int(3)),
            ("false ? 1 : true ? 2 : 3", CelValue::Int(2)),
            ("true || false ? 'y' : 'n'", s("y")),
            ("1 < 2 ? 'lt' : 'ge'", s("lt")),
            ("'a' + 'b' + 'c'", s("abc")),
            ("[1] + [2] + [3]", list(vec![CelValue::Int(1), CelValue::Int(2), CelValue::Int(3)])),
            ("-7 / 2", CelValue::Int(-3)),
            ("-7 % 2", CelValue::Int(-1)),
            ("7 % -2", CelValue::Int(1)),
            ("7u / 2u", CelValue::Uint(3)),
            ("7u % 4u", CelValue::Uint(3)),
            ("7.0 / 2.0", CelValue::Double(3.5)),
            ("0.1 + 0.2", CelValue::Double(0.1 + 0.2)),
            ("1.0 / 0.0", CelValue::Double(f64::INFINITY)),
        ];
        for (expr, expected) in cases {
            assert_eq!(value(expr), expected, "{expr}");
        }
    }

    #[test]
    fn errors_absorbed_by_the_deciding_operand_of_and_or() {
        let division = Err(CelError::DivisionByZero);
        let cases = [
            ("false && (1 / 0 == 1)", Ok(CelValue::Bool(false))),
            ("(1 / 0 == 1) && false", Ok(CelValue::Bool(false))),
            ("(1 / 0 == 1) || true", Ok(CelValue::Bool(true))),
            ("true || (1 / 0 == 1)", Ok(CelValue::Bool(true))),
            ("(1 / 0 == 1) && true && false", Ok(CelValue::Bool(false))),
            ("(1 / 0 == 1) && true", division.clone()),
            ("true && (1 / 0 == 1)", division.clone()),
            ("(1 / 0 == 1) || false", division.clone()),
            ("(1 / 0 == 1) && (1 % 0 == 1)", division.clone()),
            ("(1 % 0 == 1) || (1 / 0 == 1)", Err(CelError::ModulusByZero)),
            ("dyn('s') && false", Ok(CelValue::Bool(false))),
            ("dyn('s') || true", Ok(CelValue::Bool(true))),
            ("true ? 1 : 1 / 0", Ok(CelValue::Int(1))),
            ("false ? 1 / 0 : 2", Ok(CelValue::Int(2))),
            ("[0, 1].exists(x, 1 / x == 1)", Ok(CelValue::Bool(true))),
            ("[0, 1].all(x, 1 / x == 2)", Ok(CelValue::Bool(false))),
            ("[0, 1].all(x, 1 / x == 1)", division.clone()),
            ("[1, 0].exists(x, 1 / x == 2)", division),
        ];
        for (expr, expected) in cases {
            assert_eq!(eval(expr), expected, "{expr}");
        }
        assert_eq!(error("dyn('s') && true").to_string(), "no such overload: string && bool");
        assert_eq!(error("dyn(1) ? 1 : 2").to_string(), "no such overload: int ? _ : _");
        // A missing input on the losing side of || does not fail the condition.
        let inputs = params(json!({"a": "x"}));
        assert_eq!(
            eval_condition("inputs.parameter_values['a'] == 'x' || inputs.parameter_values['b'] == 1", &inputs),
            Ok(true)
        );
        assert_eq!(
            eval_condition("inputs.parameter_values['b'] == 1 && inputs.parameter_values['a'] == 'y'", &inputs),
            Ok(false)
        );
    }

    #[test]
    fn runtime_errors_say_what_went_wrong() {
        let cases = [
            ("1 / 0", "division by zero"),
            ("1 % 0", "modulus by zero"),
            ("1u / 0u", "division by zero"),
            ("1u % 0u", "modulus by zero"),
            ("9223372036854775807 + 1", "integer overflow: 9223372036854775807 + 1"),
            ("-9223372036854775808 - 1", "integer overflow: -9223372036854775808 - 1"),
            ("9223372036854775807 * 2", "integer overflow: 9223372036854775807 * 2"),
            ("-9223372036854775808 / -1", "integer overflow: -9223372036854775808 / -1"),
            ("-9223372036854775808 % -1", "integer overflow: -9223372036854775808 % -1"),
            ("-(-9223372036854775808)", "integer overflow: -(-9223372036854775808)"),
            ("0u - 1u", "unsigned integer overflow: 0u - 1u"),
            ("18446744073709551615u + 1u", "unsigned integer overflow: 18446744073709551615u + 1u"),
            ("4294967296u * 4294967296u", "unsigned integer overflow: 4294967296u * 4294967296u"),
            ("int(1e19)", "integer overflow: int(1e19)"),
            ("int(-9223372036854775808.0)", "integer overflow: int(-9.223372036854776e18)"),
            ("int(double('NaN'))", "integer overflow: int(NaN)"),
            ("int(18446744073709551615u)", "integer overflow: int(18446744073709551615u)"),
            ("uint(-1)", "unsigned integer overflow: uint(-1)"),
            ("uint(-0.5)", "unsigned integer overflow: uint(-0.5)"),
            ("uint(1e20)", "unsigned integer overflow: uint(1e20)"),
            ("int('abc')", r#"type conversion error: cannot convert string "abc" to int: invalid syntax"#),
            ("int('1.5')", r#"type conversion error: cannot convert string "1.5" to int: invalid syntax"#),
            ("int(' 1')", r#"type conversion error: cannot convert string " 1" to int: invalid syntax"#),
            (
                "int('99999999999999999999')",
                r#"type conversion error: cannot convert string "99999999999999999999" to int: value out of range"#,
            ),
            ("uint('+1')", r#"type conversion error: cannot convert string "+1" to uint: invalid syntax"#),
            ("uint('-1')", r#"type conversion error: cannot convert string "-1" to uint: invalid syntax"#),
            ("double('x')", r#"type conversion error: cannot convert string "x" to double: invalid syntax"#),
            ("double('0x1p3')", r#"type conversion error: cannot convert string "0x1p3" to double: invalid syntax"#),
            (
                "double('1e999')",
                r#"type conversion error: cannot convert string "1e999" to double: value out of range"#,
            ),
            ("double('+nan')", r#"type conversion error: cannot convert string "+nan" to double: invalid syntax"#),
            ("bool('yes')", r#"type conversion error: cannot convert string "yes" to bool: invalid syntax"#),
            (
                r"string(b'\xff')",
                r#"type conversion error: cannot convert bytes b"\xff" to string: the bytes are not valid UTF-8"#,
            ),
            ("[1, 2][5]", "index 5 out of range in list of size 2"),
            ("[1, 2][-1]", "index -1 out of range in list of size 2"),
            ("[1, 2][dyn(1.5)]", "unsupported index value 1.5 in list"),
            ("[1, 2][dyn('a')]", "unsupported index type 'string' in list"),
            ("{'a': 1}['b']", r#"no such key: "b" (the map has keys "a")"#),
            ("{'a': 1, 2: 3}.b", r#"no such key: "b" (the map has keys "a", 2)"#),
            ("dyn({})['b']", r#"no such key: "b" (the map is empty)"#),
            ("{'a': 1}[dyn([])]", "unsupported map key type: list"),
            ("dyn('a') + 1", "no such overload: string + int"),
            ("dyn(1.5) % dyn(1.0)", "no such overload: double % double"),
            ("dyn([1]) < dyn([2])", "no such overload: list < list"),
            ("dyn(1) in dyn('abc')", "no such overload: int in string"),
            ("-dyn('a')", "no such overload: -string"),
            ("!dyn(1)", "no such overload: !int"),
            ("dyn('abc')[0]", "no such overload: string[int]"),
            ("size(dyn(1))", "no such overload: size(int)"),
            ("int(dyn(true))", "no such overload: int(bool)"),
            ("dyn(1).contains('a')", "no such overload: int.contains(string)"),
            ("dyn(1).a", "type 'int' does not support field selection"),
            ("has(dyn(1).a)", "has() cannot test the field `a` on a value of type int"),
            (
                "dyn(1).all(x, true)",
                "expression of type 'int' cannot be the range of a comprehension (must be list, map, or dynamic)",
            ),
            ("{1.5: 'a'}", "unsupported map key type: double"),
            ("{'a': 1, 'a': 2}", r#"duplicate key "a" in a map literal"#),
            ("{1: 'a', dyn(1u): 'b'}", "duplicate key 1u in a map literal"),
            ("parseJson(dyn(1))", "no such overload: parseJson(int)"),
            ("[1].filter(x, dyn(x))", "the predicate of filter() must return a bool, not int"),
            ("[1].exists_one(x, dyn(x))", "the predicate of exists_one() must return a bool, not int"),
            ("[1, 2].exists_one(x, x / 0 == 1)", "division by zero"),
            ("[1].map(x, x / 0)", "division by zero"),
            ("x + 1", "undeclared reference to 'x'"),
        ];
        for (expr, message) in cases {
            assert_eq!(error(expr).to_string(), message, "{expr}");
        }
        let e = error("parseJson('{')");
        assert!(matches!(e, CelError::ParseJson { .. }), "{e:?}");
        assert!(e.to_string().starts_with("parseJson: failed to unmarshal JSON: EOF while parsing"), "{e}");
    }

    #[test]
    fn unsupported_features_are_named_when_parsing() {
        let cases = [
            ("'abc'.matches('^a')", "the matches() function (RE2 regular expressions)"),
            ("matches('abc', 'a')", "the matches() function (RE2 regular expressions)"),
            ("timestamp('2024-01-01T00:00:00Z') > timestamp('2023-01-01T00:00:00Z')", "the timestamp() function"),
            ("duration('1s')", "the duration() function"),
            ("x.getFullYear()", "the getFullYear() function"),
            ("Foo{a: 1}", "protobuf message construction"),
            ("google.protobuf.Value{}", "protobuf message construction"),
        ];
        for (expr, feature) in cases {
            match Program::parse(expr) {
                Err(e @ CelError::Unsupported { .. }) => {
                    let text = e.to_string();
                    assert!(text.starts_with(feature), "{expr}: {text}");
                    assert!(text.ends_with("is not supported by the local runner's CEL evaluator"), "{text}");
                }
                other => panic!("{expr}: expected Unsupported, got {other:?}"),
            }
        }
    }

    #[test]
    fn nesting_and_length_limits() {
        let parens = |n: usize| format!("{}1{}", "(".repeat(n), ")".repeat(n));
        assert_eq!(value(&parens(MAX_NESTING_DEPTH - 1)), CelValue::Int(1));
        assert!(matches!(Program::parse(&parens(MAX_NESTING_DEPTH)), Err(CelError::TooDeep { .. })));
        assert!(matches!(Program::parse(&parens(10_000)), Err(CelError::TooDeep { .. })));

        let lists = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        assert!(Program::parse(&lists(MAX_NESTING_DEPTH - 1)).is_ok());
        assert!(matches!(Program::parse(&lists(MAX_NESTING_DEPTH)), Err(CelError::TooDeep { .. })));

        // Left-associative chains nest the tree too.
        let chain = |n: usize| vec!["1"; n + 1].join(" + ");
        assert_eq!(value(&chain(MAX_NESTING_DEPTH - 1)), CelValue::Int(100));
        let e = Program::parse(&chain(MAX_NESTING_DEPTH)).unwrap_err();
        assert!(e.to_string().starts_with("the expression nests more than 100 levels deep at line 1, column"), "{e}");
        assert!(matches!(Program::parse(&chain(10_000)), Err(CelError::TooDeep { .. })));

        let fields = |n: usize| format!("x{}", ".f".repeat(n));
        assert!(Program::parse(&fields(MAX_NESTING_DEPTH - 1)).is_ok());
        assert!(matches!(Program::parse(&fields(MAX_NESTING_DEPTH)), Err(CelError::TooDeep { .. })));

        let minus = |n: usize| format!("{}1{}", "-(".repeat(n), ")".repeat(n));
        assert_eq!(value(&minus(MAX_NESTING_DEPTH - 1)), CelValue::Int(-1));
        assert!(matches!(Program::parse(&minus(MAX_NESTING_DEPTH)), Err(CelError::TooDeep { .. })));

        // && and || chains are flat, as cel-go balances them.
        let ands = vec!["true"; 5_000].join(" && ");
        assert_eq!(value(&ands), CelValue::Bool(true));
        let ors = format!("{} || true", vec!["false"; 5_000].join(" || "));
        assert_eq!(value(&ors), CelValue::Bool(true));
        // Repeated unary operators cancel out.
        assert_eq!(value(&format!("{}true", "!".repeat(10_001))), CelValue::Bool(false));

        let long = format!("1{}", " ".repeat(MAX_EXPRESSION_CHARS));
        assert_eq!(
            Program::parse(&long).unwrap_err(),
            CelError::TooLong { chars: MAX_EXPRESSION_CHARS + 1, limit: MAX_EXPRESSION_CHARS }
        );
        assert!(Program::parse(&format!("1{}", " ".repeat(MAX_EXPRESSION_CHARS - 1))).is_ok());
    }

    #[test]
    fn expressions_at_the_depth_limit_evaluate_without_exhausting_the_stack() {
        // Run on a thread with a small stack: the evaluator must not need more.
        let handle = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(|| {
                let depth = MAX_NESTING_DEPTH - 2;
                let sums = format!("{}1{}", "(1 + ".repeat(depth / 2), ")".repeat(depth / 2));
                assert_eq!(value(&sums), CelValue::Int(i64::try_from(depth / 2 + 1).unwrap_or(0)));
                let mut maps = String::from("1");
                for i in 0..depth / 3 {
                    maps = format!("[1].map(v{i}, {maps})[0]");
                }
                assert_eq!(value(&maps), CelValue::Int(1));
                let lists = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
                let nested = value(&lists);
                assert!(nested.to_json().is_ok());
                assert!(nested.to_string().starts_with("[[[["));
                assert_eq!(value(&format!("{lists} == {lists}")), CelValue::Bool(true));
                let ternaries = format!("{}0{}", "true ? (".repeat(depth / 2), ") : 1".repeat(depth / 2));
                assert_eq!(value(&ternaries), CelValue::Int(0));
            })
            .expect("spawn");
        assert!(handle.join().is_ok());
    }

    #[test]
    fn hostile_data_cannot_exhaust_the_stack_or_the_machine() {
        // serde_json refuses JSON nested deeper than 128 levels.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let e = eval_selector("parseJson(string_value)", &Json::String(deep)).unwrap_err();
        assert!(matches!(e, CelError::ParseJson { .. }), "{e}");
        // Nested comprehensions blow up exponentially: the cost limit stops them.
        let range = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]";
        let mut expr = String::from("1");
        for i in 0..7 {
            expr = format!("{range}.map(v{i}, {expr})");
        }
        assert_eq!(error(&expr), CelError::CostLimit { limit: MAX_EVAL_COST });
        // So does concatenating ever longer strings.
        let mut doubling = String::from("'xxxxxxxxxxxxxxxx'");
        for _ in 0..24 {
            doubling = format!("[{doubling}].map(s, s + s)[0]");
        }
        assert_eq!(error(&doubling), CelError::CostLimit { limit: MAX_EVAL_COST });
        // A cost error is not absorbed by && / ||.
        assert_eq!(error(&format!("false || size({expr}) > 0 || true")), CelError::CostLimit { limit: MAX_EVAL_COST });
    }

    #[test]
    fn selectors_see_the_value_as_the_backend_binds_it() {
        let dict_text = json!(r#"{"a": 1, "b": [1, 2], "c": {"d": "x"}}"#);
        let cases = [
            // What the KFP SDK compiles for a loop over dicts (`item.a`).
            (r#"parseJson(string_value)["a"]"#, dict_text.clone(), json!(1)),
            (r#"parseJson(string_value)["b"]"#, dict_text.clone(), json!([1, 2])),
            ("parseJson(string_value).b[1]", dict_text.clone(), json!(2)),
            ("parseJson(string_value).c", dict_text.clone(), json!({"d": "x"})),
            ("parseJson(string_value)", json!("[1.1,1.2,1.3]"), json!([1.1, 1.2, 1.3])),
            ("parseJson(string_value)[0]", json!("[1.1,1.2,1.3]"), json!(1.1)),
            ("parseJson(string_value)[0] == 1.1", json!("[1.1,1.2,1.3]"), json!(true)),
            ("parseJson(string_value).map(x, x * 2.0)", json!("[1, 2]"), json!([2, 4])),
            ("int(parseJson(string_value)['n']) + 1", json!(r#"{"n": 3}"#), json!(4)),
            ("size(parseJson(string_value))", dict_text, json!(3)),
            // The value's own field, and string_value as its text.
            ("string_value", json!("Hello,World!"), json!("Hello,World!")),
            ("string_value", Json::Null, json!("")),
            ("null_value == null", Json::Null, json!(true)),
            ("struct_value.a", json!({"a": "A", "b": "B"}), json!("A")),
            ("struct_value.nested.b", json!({"nested": {"a": "A", "b": "B"}}), json!("B")),
            ("struct_value.list", json!({"list": [1.1, 1.2]}), json!([1.1, 1.2])),
            ("struct_value['with space']", json!({"with space": 1}), json!(1)),
            (r#"parseJson(string_value)["a"]"#, json!({"a": {"x": 1}}), json!({"x": 1})),
            ("string_value", json!({"b": 1, "a": "<&>"}), json!(r#"{"a":"\u003c\u0026\u003e","b":1}"#)),
            ("number_value", json!(3), json!(3)),
            ("number_value * 2.0", json!(1.5), json!(3)),
            ("number_value / 4.0", json!(1), json!(0.25)),
            ("string_value", json!(3), json!("3")),
            ("string_value", json!(0.5), json!("0.5")),
            ("bool_value", json!(true), json!(true)),
            ("string_value", json!(false), json!("false")),
            ("list_value[0]", json!([1, "x"]), json!(1)),
            ("size(list_value)", json!([1, "x"]), json!(2)),
            ("string_value", json!([1, "x"]), json!(r#"[1,"x"]"#)),
            ("b'ab'", json!(0), json!("YWI=")),
            ("{'k': [1u, -2, 2.5, null]}", json!(0), json!({"k": [1, -2, 2.5, null]})),
        ];
        for (expr, input, expected) in cases {
            assert_eq!(eval_selector(expr, &input), Ok(expected), "{expr} on {input}");
        }
    }

    #[test]
    fn selector_errors() {
        let cases = [
            ("struct_value", json!("Hello"), "no such attribute: 'struct_value' is not set for this value"),
            ("number_value", json!({"a": 1}), "no such attribute: 'number_value' is not set for this value"),
            ("struct_value.c", json!({"a": "A"}), r#"no such key: "c" (the map has keys "a")"#),
            ("type(1)", json!(0), "the result cannot be converted to a JSON value: `int` is a type"),
            ("{1: 'a'}", json!(0), "the result cannot be converted to a JSON value: the map key 1 is not a string"),
            ("double('NaN')", json!(0), "the result cannot be converted to a JSON value: NaN has no JSON form"),
            ("item", json!(0), "type error at line 1, column 1: undeclared reference to 'item'\n | item\n | ^"),
            (
                "false && item",
                json!(0),
                "type error at line 1, column 10: undeclared reference to 'item'\n | false && item\n | .........^",
            ),
        ];
        for (expr, input, message) in cases {
            match eval_selector(expr, &input) {
                Err(e) => assert_eq!(e.to_string(), message, "{expr}"),
                Ok(v) => panic!("{expr} selected {v}"),
            }
        }
        let e = eval_selector("parseJson(string_value)", &json!("invalidjson")).unwrap_err();
        assert!(e.to_string().starts_with("parseJson: failed to unmarshal JSON: expected value"), "{e}");
    }

    #[test]
    fn macros() {
        let cases = [
            ("[1, 2, 3].all(x, x > 0)", true),
            ("[1, 2, 3].all(x, x > 1)", false),
            ("[].all(x, x > 1)", true),
            ("[1, 2, 3].exists(x, x == 2)", true),
            ("[].exists(x, true)", false),
            ("[1, 2, 3].exists_one(x, x > 2)", true),
            ("[1, 2, 3].exists_one(x, x > 1)", false),
            ("[1, 2, 3].map(x, x * 2) == [2, 4, 6]", true),
            ("[1, 2, 3].map(x, x % 2 == 1, x * 10) == [10, 30]", true),
            ("[1, 2, 3].filter(x, x != 2) == [1, 3]", true),
            ("[].map(x, x) == []", true),
            ("{'a': 1, 'b': 2}.all(k, k in ['a', 'b'])", true),
            ("{'a': 1, 'b': 2}.map(k, k + '!') == ['a!', 'b!']", true),
            ("{'a': 1, 'b': 2}.filter(k, k == 'b') == ['b']", true),
            ("has({'a': 1}.a)", true),
            ("has({'a': 1}.b)", false),
            ("has({'a': {'b': 1}}.a.b)", true),
            ("[[1, 2], [3]].map(l, l.map(x, x + 1)) == [[2, 3], [4]]", true),
            ("[1, 2].all(x, [3, 4].exists(y, y > x))", true),
            ("[1, 2].map(x, [x].map(x, x * 10)[0]) == [10, 20]", true),
            ("['a', 'bb'].map(s, size(s)) == [1, 2]", true),
        ];
        for (expr, expected) in cases {
            assert_eq!(value(expr), CelValue::Bool(expected), "{expr}");
        }
        // The loop variable shadows a variable of the same name, inside the macro only.
        let vars = Activation::new().with("x", CelValue::Int(100));
        let program = Program::parse("[1].map(x, x)[0] == 1 && x == 100").expect("parses");
        assert_eq!(program.eval(&vars), Ok(CelValue::Bool(true)));
    }

    #[test]
    fn membership_size_types_and_strings() {
        let cases = [
            ("'a' in ['a', 'b']", true),
            ("'z' in ['a', 'b']", false),
            ("'a' in {'a': 1}", true),
            ("'z' in {'a': 1}", false),
            ("[1] in [[1], [2]]", true),
            ("size('héllo') == 5", true),
            ("'héllo'.size() == 5", true),
            (r"size(b'\xff\x00') == 2", true),
            ("size([1, 2]) == 2", true),
            ("size({'a': 1}) == 1", true),
            ("[1, 2, 3].size() == 3", true),
            ("type(1) == int", true),
            ("type(1u) == uint", true),
            ("type(1.0) == double", true),
            ("type('a') == string", true),
            ("type(b'a') == bytes", true),
            ("type(true) == bool", true),
            ("type(null) == null_type", true),
            ("type([]) == list", true),
            ("type({}) == map", true),
            ("type(int) == type", true),
            ("type(type(1)) == type", true),
            ("type(dyn(1.0)) == double", true),
            ("type(1) == string", false),
            ("type(1) != type(1u)", true),
            ("'hello world'.contains('o w')", true),
            ("'hello'.contains('')", true),
            ("'hello'.startsWith('he')", true),
            ("'hello'.startsWith('lo')", false),
            ("'hello'.endsWith('lo')", true),
            ("'a' + 'b' == 'ab'", true),
            ("b'a' + b'b' == b'ab'", true),
            ("[1] + [] == [1]", true),
            ("{'a': [1, {'b': null}]}.a[1].b == null", true),
            ("{'a': 1} == {'a': 1} && {'a': 1} != {'a': 2} && {'a': 1} != {'b': 1}", true),
            ("[1, 2] != [1] && [1, 2] != [2, 1]", true),
            (".size('abc') == 3", true),
            ("null == null", true),
        ];
        for (expr, expected) in cases {
            assert_eq!(value(expr), CelValue::Bool(expected), "{expr}");
        }
    }

    #[test]
    fn conversions() {
        let cases = [
            ("int(42)", CelValue::Int(42)),
            ("int(42u)", CelValue::Int(42)),
            ("int(3.9)", CelValue::Int(3)),
            ("int(-3.9)", CelValue::Int(-3)),
            ("int('-17')", CelValue::Int(-17)),
            ("int('+17')", CelValue::Int(17)),
            ("uint(42)", CelValue::Uint(42)),
            ("uint(3.9)", CelValue::Uint(3)),
            ("uint('42')", CelValue::Uint(42)),
            ("double(3)", CelValue::Double(3.0)),
            ("double(3u)", CelValue::Double(3.0)),
            ("double('2.5')", CelValue::Double(2.5)),
            ("double('1e3')", CelValue::Double(1000.0)),
            ("double('.5')", CelValue::Double(0.5)),
            ("double('-Inf')", CelValue::Double(f64::NEG_INFINITY)),
            ("double('infinity')", CelValue::Double(f64::INFINITY)),
            ("string(42)", s("42")),
            ("string(-42)", s("-42")),
            ("string(42u)", s("42")),
            ("string(true)", s("true")),
            ("string(b'abc')", s("abc")),
            ("string('x')", s("x")),
            ("string(1.0)", s("1")),
            ("string(1.5)", s("1.5")),
            ("string(-2.5)", s("-2.5")),
            ("string(100.0)", s("100")),
            ("string(123456.0)", s("123456")),
            ("string(1e6)", s("1e+06")),
            ("string(1234567.0)", s("1.234567e+06")),
            ("string(0.0001)", s("0.0001")),
            ("string(0.00001)", s("1e-05")),
            ("string(-2.5e-10)", s("-2.5e-10")),
            ("string(1e100)", s("1e+100")),
            ("string(-0.0)", s("-0")),
            ("string(0.0)", s("0")),
            ("string(1.0 / 3.0)", s("0.3333333333333333")),
            ("string(double('inf'))", s("+Inf")),
            ("string(double('-inf'))", s("-Inf")),
            ("string(double('nan'))", s("NaN")),
            ("bool('true')", CelValue::Bool(true)),
            ("bool('T')", CelValue::Bool(true)),
            ("bool('1')", CelValue::Bool(true)),
            ("bool('0')", CelValue::Bool(false)),
            ("bool('False')", CelValue::Bool(false)),
            ("bool(true)", CelValue::Bool(true)),
            ("bytes('é')", CelValue::Bytes(vec![195, 169])),
            ("bytes(b'x')", CelValue::Bytes(b"x".to_vec())),
            ("dyn(1)", CelValue::Int(1)),
        ];
        for (expr, expected) in cases {
            assert_eq!(value(expr), expected, "{expr}");
        }
    }

    #[test]
    fn json_conversions() {
        let from = CelValue::from_json(&json!({"a": [1, 2.5, "x", null, true], "b": {}}));
        assert_eq!(
            from,
            CelValue::Map(vec![
                (
                    s("a"),
                    list(vec![
                        CelValue::Double(1.0),
                        CelValue::Double(2.5),
                        s("x"),
                        CelValue::Null,
                        CelValue::Bool(true)
                    ])
                ),
                (s("b"), CelValue::Map(vec![])),
            ])
        );
        assert_eq!(from.to_json(), Ok(json!({"a": [1, 2.5, "x", null, true], "b": {}})));
        let cases = [
            (CelValue::Int(-3), json!(-3)),
            (CelValue::Uint(u64::MAX), json!(u64::MAX)),
            (CelValue::Double(3.0), json!(3)),
            (CelValue::Double(-0.0), json!(0)),
            (CelValue::Double(2.5), json!(2.5)),
            (CelValue::Double(1e300), json!(1e300)),
            (CelValue::Double(9_007_199_254_740_992.0), json!(9_007_199_254_740_992.0)),
            (CelValue::Bytes(vec![]), json!("")),
            (CelValue::Bytes(b"a".to_vec()), json!("YQ==")),
            (CelValue::Bytes(b"ab".to_vec()), json!("YWI=")),
            (CelValue::Bytes(vec![0, 1, 2, 255]), json!("AAEC/w==")),
        ];
        for (cel, expected) in cases {
            assert_eq!(cel.to_json(), Ok(expected), "{cel}");
        }
        assert!(CelValue::Double(f64::INFINITY).to_json().is_err());
        assert!(CelValue::Map(vec![(CelValue::Bool(true), CelValue::Null)]).to_json().is_err());
        assert!(CelValue::Type(CelType::Int).to_json().is_err());
    }

    #[test]
    fn value_text_matches_the_backend() {
        let cases = [
            (Json::Null, ""),
            (json!("x y"), "x y"),
            (json!(3), "3"),
            (json!(3.0), "3"),
            (json!(-0.5), "-0.5"),
            (json!(1e21), "1000000000000000000000"),
            (json!(1e-7), "0.0000001"),
            (json!(true), "true"),
            (json!([1, 2.5, "a", null, false]), r#"[1,2.5,"a",null,false]"#),
            (json!({"b": 1, "a": {"d": [], "c": null}}), r#"{"a":{"c":null,"d":[]},"b":1}"#),
            (json!([1e21, 1e-7, 123_456_789.0, -0.0, 1e-6, 1.5e300]), "[1e+21,1e-7,123456789,-0,0.000001,1.5e+300]"),
            (json!(["<a&b>", "\u{1}\n\"\\", "é\u{2028}"]), r#"["\u003ca\u0026b\u003e","\u0001\n\"\\","é\u2028"]"#),
        ];
        for (input, expected) in cases {
            assert_eq!(pb_value_to_text(&input), expected, "{input}");
        }
    }

    #[test]
    fn condition_errors() {
        let inputs = params(json!({"x": "s", "n": 1}));
        let cases = [
            ("inputs.parameter_values['x']", r#"the condition evaluated to string "s", not to a bool"#),
            ("inputs.parameter_values['n']", "the condition evaluated to double 1.0, not to a bool"),
            (IS_HEADS, r#"no such key: "pipelinechannel--flip-Output" (the map has keys "x", "n")"#),
            (
                "input.parameter_values['x'] == 's'",
                "type error at line 1, column 1: undeclared reference to 'input'\n | input.parameter_values['x'] == 's'\n | ^",
            ),
            ("inputs.parameter_values['x'] + 1 == 2", "no such overload: string + int"),
            (
                "int(inputs.parameter_values['x']) > 1",
                r#"type conversion error: cannot convert string "s" to int: invalid syntax"#,
            ),
        ];
        for (expr, message) in cases {
            match eval_condition(expr, &inputs) {
                Err(e) => assert_eq!(e.to_string(), message, "{expr}"),
                Ok(b) => panic!("{expr} evaluated to {b}"),
            }
        }
        let empty = serde_json::Map::new();
        assert_eq!(
            eval_condition(IS_HEADS, &empty).unwrap_err().to_string(),
            r#"no such key: "pipelinechannel--flip-Output" (the map is empty)"#
        );
        let many = params(
            json!({"k0": 0, "k1": 1, "k2": 2, "k3": 3, "k4": 4, "k5": 5, "k6": 6, "k7": 7, "k8": 8, "k9": 9, "k10": 10, "k11": 11, "k12": 12, "k13": 13}),
        );
        let text = eval_condition("inputs.parameter_values['k'] == 1", &many).unwrap_err().to_string();
        assert!(text.ends_with(r#""k11", … (2 more))"#), "{text}");
        assert!(matches!(eval_condition("inputs.parameter_values[", &empty), Err(CelError::Syntax { .. })));
        // Names the backend does not declare are rejected even where they would not be evaluated.
        let e = eval_condition("true || foo == 1", &empty).unwrap_err();
        assert!(e.to_string().starts_with("type error at line 1, column 9: undeclared reference to 'foo'"), "{e}");
        assert_eq!(eval_condition("[1].all(x, x > 0) && type(1) == int", &empty), Ok(true));
        let program = Program::parse("[1].exists(v, v == w)").expect("parses");
        assert!(program.check_declared(&["w"]).is_ok());
        assert!(program.check_declared(&[]).is_err());
        assert!(Program::parse("[1].map(v, v)[0] + v").expect("parses").check_declared(&[]).is_err());
        // The rest of the environment exists.
        assert_eq!(eval_condition("has(inputs.parameter_values) && size(inputs.artifacts) == 0", &empty), Ok(true));
        assert_eq!(eval_condition("outputs.output_file == '' && size(outputs.parameters) == 0", &empty), Ok(true));
    }

    #[test]
    fn programs_are_reusable_and_activations_compose() {
        let program = Program::parse("a + 1 > b").expect("parses");
        assert_eq!(program.source(), "a + 1 > b");
        let one = Activation::new().with("a", CelValue::Int(1)).with("b", CelValue::Int(1));
        let two = Activation::new().with("a", CelValue::Int(1)).with("b", CelValue::Int(5));
        assert_eq!(program.eval(&one), Ok(CelValue::Bool(true)));
        assert_eq!(program.eval(&two), Ok(CelValue::Bool(false)));
        assert_eq!(one.get("a"), Some(&CelValue::Int(1)));
        assert_eq!(one.get("c"), None);

        let mut vars = Activation::new().with_unset("b");
        let program = Program::parse("b").expect("parses");
        assert_eq!(program.eval(&vars), Err(CelError::UnsetVariable { name: "b".to_owned() }));
        vars.insert("b", s("set"));
        assert_eq!(program.eval(&vars), Ok(s("set")));
        let vars = vars.with_unset("b");
        assert_eq!(vars.get("b"), None);
        assert_eq!(program.eval(&Activation::new()), Err(CelError::UnknownVariable { name: "b".to_owned() }));
    }

    #[test]
    fn values_display_as_cel_literals() {
        let v = CelValue::Map(vec![
            (s("k\"\n"), list(vec![CelValue::Int(1), CelValue::Uint(2), CelValue::Double(2.0), CelValue::Null])),
            (CelValue::Int(1), CelValue::Bytes(b"a\xff\"".to_vec())),
            (CelValue::Bool(false), CelValue::Type(CelType::Null)),
        ]);
        assert_eq!(v.to_string(), r#"{"k\"\n": [1, 2u, 2.0, null], 1: b"a\xff\"", false: null_type}"#);
        assert_eq!(CelValue::Double(f64::NEG_INFINITY).to_string(), "-Infinity");
        assert_eq!(CelType::Double.to_string(), "double");
    }
}
