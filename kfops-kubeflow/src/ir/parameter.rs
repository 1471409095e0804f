//! Parameter types and values: casting JSON values by declared type, and
//! rendering them as text the way the KFP backend does.

use serde_json::Value;

string_enum! {
    /// The declared type of a parameter (`parameterType` in the IR,
    /// `ml_pipelines.ParameterType.ParameterTypeEnum`).
    pub enum ParameterType {
        /// `PARAMETER_TYPE_ENUM_UNSPECIFIED`: no type given; any value is accepted.
        Unspecified => "PARAMETER_TYPE_ENUM_UNSPECIFIED",
        /// `NUMBER_DOUBLE`: a floating-point number.
        NumberDouble => "NUMBER_DOUBLE",
        /// `NUMBER_INTEGER`: a whole number (stored as a double by protobuf, so the
        /// IR writes defaults like `2.0`).
        NumberInteger => "NUMBER_INTEGER",
        /// `STRING`.
        String => "STRING",
        /// `BOOLEAN`.
        Boolean => "BOOLEAN",
        /// `LIST`: a JSON array.
        List => "LIST",
        /// `STRUCT`: a JSON object.
        Struct => "STRUCT",
        /// `TASK_FINAL_STATUS`: the final status of an upstream task (exit handlers).
        TaskFinalStatus => "TASK_FINAL_STATUS",
        /// `TASK_CONFIG`: the task's own configuration, passed by the backend.
        TaskConfig => "TASK_CONFIG",
    }
}

/// Largest integer a double represents exactly (JavaScript's `Number.MAX_SAFE_INTEGER`);
/// KFP requires `NUMBER_INTEGER` values to stay within ±this.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

impl ParameterType {
    /// What values of this type look like, for messages ("a whole number").
    pub fn describe(&self) -> &'static str {
        match self {
            Self::NumberDouble => "a number",
            Self::NumberInteger => "a whole number",
            Self::String => "a string",
            Self::Boolean => "true or false",
            Self::List => "a list",
            Self::Struct | Self::TaskFinalStatus | Self::TaskConfig => "an object",
            Self::Unspecified | Self::Unknown(_) => "any value",
        }
    }

    /// Checks `value` against this type and returns it in its canonical typed
    /// form, or `None` when the value does not fit.
    ///
    /// * `NUMBER_INTEGER` accepts integers and whole floats (`2.0` becomes `2`),
    ///   not `2.5` nor `"2"`.
    /// * `NUMBER_DOUBLE` accepts any number and returns it as a float.
    /// * `STRING`, `BOOLEAN`, `LIST`, `STRUCT` accept only that JSON type (no
    ///   coercion); `TASK_FINAL_STATUS` and `TASK_CONFIG` accept objects.
    /// * Unspecified or unknown types accept anything unchanged.
    ///
    /// Only the top level is cast: list items and struct fields are kept as given,
    /// because the IR does not declare their types.
    pub fn cast(&self, value: &Value) -> Option<Value> {
        match (self, value) {
            (Self::NumberInteger, Value::Number(n)) => {
                if n.is_i64() || n.is_u64() {
                    Some(value.clone())
                } else {
                    let f = n.as_f64()?;
                    // The range check makes the `as` conversion exact.
                    #[allow(clippy::cast_possible_truncation)]
                    (f.fract() == 0.0 && f.abs() <= MAX_SAFE_INTEGER).then(|| Value::from(f as i64))
                }
            }
            (Self::NumberDouble, Value::Number(n)) => n.as_f64().map(Value::from),
            (Self::String, Value::String(_))
            | (Self::Boolean, Value::Bool(_))
            | (Self::List, Value::Array(_))
            | (Self::Struct | Self::TaskFinalStatus | Self::TaskConfig, Value::Object(_))
            | (Self::Unspecified | Self::Unknown(_), _) => Some(value.clone()),
            _ => None,
        }
    }
}

/// The JSON kind of a value, for messages: `"null"`, `"boolean"`, `"integer"`,
/// `"float"`, `"string"`, `"list"` or `"object"`.
pub fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "object",
    }
}

/// Renders a parameter value as text exactly like the KFP backend driver
/// substitutes `{{$.inputs.parameters['x']}}` (`pbValueToString` in
/// `backend/src/v2/driver/util.go`):
///
/// * strings verbatim, `null` as the empty string, booleans as `true`/`false`;
/// * whole numbers as integers (`2.0` → `2`), other numbers like Go's `%g`
///   (`0.5`, `1e-07`, `1.2345675e+06`);
/// * lists and objects as compact JSON the way Go's `encoding/json` writes them
///   (object keys sorted, whole numbers without `.0`, `<`, `>`, `&` escaped).
pub fn format_parameter_value(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or_default();
            // Go: `if n == float64(int64(n))`; the bound keeps the conversion exact.
            if f.fract() == 0.0 && f.abs() < i64::MAX as f64 {
                #[allow(clippy::cast_possible_truncation)]
                let whole = f as i64;
                whole.to_string()
            } else {
                go_format_g(f)
            }
        }
        Value::Array(_) | Value::Object(_) => {
            let mut out = String::new();
            write_go_json(value, &mut out);
            out
        }
    }
}

/// The shortest round-trip decimal digits of a finite, non-zero `f` and its
/// decimal exponent (`123.5` → `("1235", 2)`), plus the sign.
fn shortest_digits(f: f64) -> (bool, String, i32) {
    let sci = format!("{:e}", f.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    (f.is_sign_negative(), digits, exponent.parse().unwrap_or(0))
}

/// Go's `%e` layout for shortest digits: `d.ddde±XX` (at least two exponent digits).
fn go_exponent_form(negative: bool, digits: &str, exp: i32) -> String {
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    out.push_str(&format!("{:02}", exp.unsigned_abs()));
    out
}

/// Go's `%f` layout for shortest digits (no trailing zeros after the point).
fn go_fixed_form(negative: bool, digits: &str, exp: i32) -> String {
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    let point = exp + 1;
    let len = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    if point <= 0 {
        out.push_str("0.");
        out.push_str(&"0".repeat(point.unsigned_abs() as usize));
        out.push_str(digits);
    } else if point >= len {
        out.push_str(digits);
        out.push_str(&"0".repeat((point - len) as usize));
    } else {
        let (int, frac) = digits.split_at(point as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// Go's `fmt.Sprintf("%g", f)` (shortest representation; exponent form when the
/// exponent is < -4 or >= 6).
pub(crate) fn go_format_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let (negative, digits, exp) = shortest_digits(f);
    if !(-4..6).contains(&exp) {
        go_exponent_form(negative, &digits, exp)
    } else {
        go_fixed_form(negative, &digits, exp)
    }
}

/// A number the way Go's `encoding/json` writes a float64: fixed notation unless
/// the magnitude is below 1e-6 or at least 1e21, and `e-07` shortened to `e-7`.
fn go_json_number(f: f64) -> String {
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.to_owned();
    }
    let (negative, digits, exp) = shortest_digits(f);
    let abs = f.abs();
    if !(1e-6..1e21).contains(&abs) {
        let text = go_exponent_form(negative, &digits, exp);
        match text.split_once("e-0") {
            Some((mantissa, rest)) => format!("{mantissa}e-{rest}"),
            None => text,
        }
    } else {
        go_fixed_form(negative, &digits, exp)
    }
}

/// A JSON string the way Go's `encoding/json` (HTML-escaping on) writes it.
fn write_go_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Compact JSON as Go's `json.Marshal` writes a `structpb` value (keys sorted,
/// HTML characters escaped, numbers as float64): lists and structs in placeholders
/// and in CEL's `string_value`.
pub(crate) fn go_json(value: &Value) -> String {
    let mut out = String::new();
    write_go_json(value, &mut out);
    out
}

/// Compact JSON the way Go's `json.Marshal` writes a `structpb` value converted
/// with `AsInterface()` (all numbers are float64, object keys sorted).
fn write_go_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&go_json_number(n.as_f64().unwrap_or_default())),
        Value::String(s) => write_go_json_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json_string(key, out);
                out.push(':');
                write_go_json(item, out);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parameter_type_names_round_trip_including_unknown() {
        for name in ["NUMBER_INTEGER", "TASK_CONFIG", "SOMETHING_NEW"] {
            let ty: ParameterType = serde_json::from_value(json!(name)).expect("parses");
            assert_eq!(serde_json::to_value(&ty).expect("serializes"), json!(name));
        }
        assert_eq!(ParameterType::from_name("LIST"), ParameterType::List);
        assert_eq!(ParameterType::from_name("X"), ParameterType::Unknown("X".into()));
    }

    #[test]
    fn cast_follows_declared_type() {
        use ParameterType as T;
        assert_eq!(T::NumberInteger.cast(&json!(2.0)), Some(json!(2)));
        assert_eq!(T::NumberInteger.cast(&json!(-7)), Some(json!(-7)));
        assert_eq!(T::NumberInteger.cast(&json!(2.5)), None);
        assert_eq!(T::NumberInteger.cast(&json!("2")), None);
        assert_eq!(T::NumberInteger.cast(&json!(1e300)), None);
        assert_eq!(T::NumberDouble.cast(&json!(3)), Some(json!(3.0)));
        assert_eq!(T::NumberDouble.cast(&json!("3")), None);
        assert_eq!(T::String.cast(&json!(3)), None);
        assert_eq!(T::Boolean.cast(&json!(1)), None);
        assert_eq!(T::List.cast(&json!([1.0])), Some(json!([1.0])));
        assert_eq!(T::Struct.cast(&json!([])), None);
        assert_eq!(T::TaskFinalStatus.cast(&json!({})), Some(json!({})));
        assert_eq!(T::Unknown("X".into()).cast(&json!(1)), Some(json!(1)));
    }

    #[test]
    fn value_kinds() {
        assert_eq!(value_kind(&json!(null)), "null");
        assert_eq!(value_kind(&json!(2)), "integer");
        assert_eq!(value_kind(&json!(2.0)), "float");
        assert_eq!(value_kind(&json!({})), "object");
    }

    #[test]
    fn formats_like_the_backend_driver() {
        let cases = [
            (json!("Hello"), "Hello"),
            (json!(null), ""),
            (json!(true), "true"),
            (json!(3), "3"),
            (json!(2.0), "2"),
            (json!(-4.0), "-4"),
            (json!(0.5), "0.5"),
            (json!(1e-7), "1e-07"),
            (json!(0.0001), "0.0001"),
            (json!(0.00001), "1e-05"),
            (json!(123_456.5), "123456.5"),
            (json!(1_234_567.5), "1.2345675e+06"),
            (json!(-2.25), "-2.25"),
            (json!(1e300), "1e+300"),
            (json!(["a", 1.0, 2.5, true, null]), r#"["a",1,2.5,true,null]"#),
            (json!({"b": 1, "a": {"z": [], "y": "<&>"}}), r#"{"a":{"y":"\u003c\u0026\u003e","z":[]},"b":1}"#),
            (json!([1e-7, 1e21, 1e20, "\u{1}\n\u{8}"]), r#"[1e-7,1e+21,100000000000000000000,"\u0001\n\b"]"#),
        ];
        for (value, expected) in cases {
            assert_eq!(format_parameter_value(&value), expected, "{value}");
        }
    }
}
