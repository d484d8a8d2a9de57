//! Request parameters and their validation with the exact egg-valparams texts (AF §1 items 2–4,
//! §2.3). Each parameter is read only from its stated place; rules are checked in the order the
//! handler asks for them, so the first failure is the one reported.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::services::Page;

const INT_MAX_DEFAULT: i128 = 10_000_000_000_000_000;
const STR_MAX_DEFAULT: usize = 10_000_000;

/// The parsed body (JSON object or form), path parameters and query of one request.
#[derive(Debug, Clone, Default)]
pub struct Params {
    pub body: Map<String, Value>,
    pub path: HashMap<String, String>,
    pub query: HashMap<String, String>,
}

/// Body parse outcome stored by the body middleware for the `Params` extractor.
#[derive(Clone)]
pub enum ParsedBody {
    Ok(Map<String, Value>),
    Bad,
    TooLarge,
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self> {
        let body = match parts.extensions.get::<ParsedBody>() {
            Some(ParsedBody::Ok(m)) => m.clone(),
            Some(ParsedBody::Bad) => return Err(Error::fail("请求数据格式错误")),
            Some(ParsedBody::TooLarge) => return Err(Error::TooLarge),
            None => Map::new(),
        };
        let path = match RawPathParams::from_request_parts(parts, state).await {
            Ok(p) => p
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            Err(_) => HashMap::new(),
        };
        let query = parse_query(parts.uri.query().unwrap_or(""));
        Ok(Params { body, path, query })
    }
}

pub fn parse_query(q: &str) -> HashMap<String, String> {
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

/// A form body as a JSON object: repeated keys (and `k[]`, `k[0]`) become arrays.
pub fn form_to_map(bytes: &[u8]) -> Map<String, Value> {
    let mut map = Map::new();
    for (k, v) in form_urlencoded::parse(bytes) {
        let (key, is_array) = match k.find('[') {
            Some(i) if k.ends_with(']') => (k[..i].to_string(), true),
            _ => (k.into_owned(), false),
        };
        let v = Value::String(v.into_owned());
        match map.get_mut(&key) {
            Some(Value::Array(a)) => a.push(v),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, v]);
            }
            None if is_array => {
                map.insert(key, Value::Array(vec![v]));
            }
            None => {
                map.insert(key, v);
            }
        }
    }
    map
}

/// Where a parameter is read (AF §1 item 2).
#[derive(Clone, Copy)]
pub enum In {
    Body,
    Path,
    Query,
}

impl Params {
    pub fn raw(&self, place: In, name: &str) -> Option<Value> {
        match place {
            In::Body => self.body.get(name).cloned(),
            In::Path => self.path.get(name).map(|s| Value::String(s.clone())),
            In::Query => self.query.get(name).map(|s| Value::String(s.clone())),
        }
    }

    /// `page` (path, ≥ 1) and `limit` (query; absent, not an integer or < 1 → `default_limit`),
    /// AF §6.3. Absurd pages saturate and simply come back empty.
    pub fn page(&self, default_limit: i64) -> Result<Page> {
        let page = self.int(In::Path, "page", "页码").min(1).get()?;
        let limit = self
            .int(In::Query, "limit", "每页多少条")
            .min(1)
            .or(default_limit);
        Ok(Page {
            limit,
            offset: (page - 1).saturating_mul(limit),
        })
    }

    pub fn int(&self, place: In, name: &str, desc: &'static str) -> IntRule {
        IntRule {
            value: present(self.raw(place, name)),
            desc,
            min: None,
            max: None,
            one_of: None,
        }
    }

    pub fn str(&self, place: In, name: &str, desc: &'static str) -> StrRule {
        StrRule {
            value: present(self.raw(place, name)),
            desc,
            min: None,
            max: None,
            one_of: None,
        }
    }

    /// The raw JSON value of a body field that keeps its type (API 二十 `data`/`type`).
    pub fn any(&self, name: &str, desc: &'static str) -> Result<Value> {
        match self.body.get(name) {
            None | Some(Value::Null) => Err(Error::Invalid(format!("{desc}不能为空"))),
            Some(Value::String(s)) if s.is_empty() => {
                Err(Error::Invalid(format!("{desc}不能为空")))
            }
            Some(v) => Ok(v.clone()),
        }
    }
}

/// "An empty string counts as not sent"; JSON `null` too.
fn present(v: Option<Value>) -> Option<Value> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(v) => Some(v),
    }
}

/// The text form valparams printed for a value.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        Value::Array(a) => a.iter().map(text_of).collect::<Vec<_>>().join(","),
        Value::Object(_) => "[object Object]".to_string(),
    }
}

/// Length as AF §1 item 4 counts it: scalar values, not counting U+FE0E/U+FE0F.
pub fn char_len(s: &str) -> usize {
    s.chars()
        .filter(|c| !matches!(c, '\u{FE0E}' | '\u{FE0F}'))
        .count()
}

/// Parse an `int` value: a JSON integer, or a decimal-integer string (optional sign, leading zeros).
fn parse_int(v: &Value) -> Option<i128> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i as i128)
            } else if let Some(u) = n.as_u64() {
                Some(u as i128)
            } else {
                n.as_f64()
                    .filter(|f| f.is_finite() && f.fract() == 0.0)
                    .map(|f| f as i128)
            }
        }
        Value::String(s) => {
            let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Saturate absurd lengths: they fail the range check, never the type check.
            Some(s.parse::<i128>().unwrap_or(if s.starts_with('-') {
                i128::MIN
            } else {
                i128::MAX
            }))
        }
        _ => None,
    }
}

fn in_set_text(desc: &str, value: &str, set: &[String]) -> String {
    let items: Vec<String> = set.iter().map(|s| format!("`{s}`")).collect();
    format!("{desc} 的值 `{value}` 必须在 [{}] 中", items.join(","))
}

pub struct IntRule {
    value: Option<Value>,
    desc: &'static str,
    min: Option<i128>,
    max: Option<i128>,
    one_of: Option<&'static [i64]>,
}

impl IntRule {
    pub fn min(mut self, m: i64) -> Self {
        self.min = Some(m as i128);
        self
    }
    pub fn max(mut self, m: i64) -> Self {
        self.max = Some(m as i128);
        self
    }
    pub fn one_of(mut self, set: &'static [i64]) -> Self {
        self.one_of = Some(set);
        self
    }

    fn check(&self, v: &Value) -> std::result::Result<i64, String> {
        let desc = self.desc;
        let Some(n) = parse_int(v) else {
            return Err(format!("{desc} 的值 `{}` 的类型不是 `int`", text_of(v)));
        };
        let (lo, hi) = (
            self.min.unwrap_or(-INT_MAX_DEFAULT),
            self.max.unwrap_or(INT_MAX_DEFAULT),
        );
        if n < lo || n > hi {
            return Err(if lo == 0 || hi == 0 {
                format!("{desc} 的数值 必须 大于等于 `{lo}` 少于等于 `{hi}`")
            } else {
                format!("{desc} 的数值 必须 在 {lo} 和 {hi} 之间")
            });
        }
        if let Some(set) = self.one_of {
            if !set.iter().any(|s| *s as i128 == n) {
                let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
                return Err(in_set_text(desc, &text_of(v), &set));
            }
        }
        i64::try_from(n).map_err(|_| format!("{desc} 的数值 必须 在 {lo} 和 {hi} 之间"))
    }

    /// Required: missing → `{desc}不能为空`; invalid → its message (422).
    pub fn get(self) -> Result<i64> {
        match &self.value {
            None => Err(Error::Invalid(format!("{}不能为空", self.desc))),
            Some(v) => self.check(v).map_err(Error::Invalid),
        }
    }

    /// Optional without a default: `None` when absent or invalid.
    pub fn opt(self) -> Option<i64> {
        self.value.as_ref().and_then(|v| self.check(v).ok())
    }

    /// Optional with a default: missing or invalid → the default, never a 422 (AF §2.3, A22).
    pub fn or(self, default: i64) -> i64 {
        self.value
            .as_ref()
            .and_then(|v| self.check(v).ok())
            .unwrap_or(default)
    }
}

pub struct StrRule {
    value: Option<Value>,
    desc: &'static str,
    min: Option<usize>,
    max: Option<usize>,
    one_of: Option<&'static [&'static str]>,
}

impl StrRule {
    pub fn len(mut self, min: usize, max: usize) -> Self {
        self.min = Some(min);
        self.max = Some(max);
        self
    }
    pub fn min_len(mut self, min: usize) -> Self {
        self.min = Some(min);
        self
    }
    pub fn one_of(mut self, set: &'static [&'static str]) -> Self {
        self.one_of = Some(set);
        self
    }

    fn check(&self, v: &Value) -> std::result::Result<String, String> {
        let s = match v {
            Value::String(s) => s.clone(),
            other => text_of(other),
        };
        if self.min.is_some() || self.max.is_some() {
            let (lo, hi) = (self.min.unwrap_or(0), self.max.unwrap_or(STR_MAX_DEFAULT));
            let n = char_len(&s);
            if n < lo || n > hi {
                return Err(format!("{} 的长度 必须 在 {lo} 和 {hi} 之间", self.desc));
            }
        }
        if let Some(set) = self.one_of {
            if !set.contains(&s.as_str()) {
                let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
                return Err(in_set_text(self.desc, &s, &set));
            }
        }
        Ok(s)
    }

    pub fn get(self) -> Result<String> {
        match &self.value {
            None => Err(Error::Invalid(format!("{}不能为空", self.desc))),
            Some(v) => self.check(v).map_err(Error::Invalid),
        }
    }

    pub fn or(self, default: &str) -> String {
        self.value
            .as_ref()
            .and_then(|v| self.check(v).ok())
            .unwrap_or_else(|| default.to_string())
    }

    /// Optional without a default: `None` when absent or invalid.
    pub fn opt(self) -> Option<String> {
        self.value.as_ref().and_then(|v| self.check(v).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(v: Value) -> Params {
        Params {
            body: v.as_object().cloned().unwrap_or_default(),
            ..Default::default()
        }
    }

    fn err(r: Result<impl std::fmt::Debug>) -> String {
        match r {
            Err(Error::Invalid(t)) => t,
            other => panic!("expected a 422, got {other:?}"),
        }
    }

    #[test]
    fn valparams_texts_are_exact() {
        let p =
            body(json!({"username":"abc","page":"abc","id":0,"status":"yes","f":2,"u":"x","s":""}));
        assert_eq!(
            err(p.str(In::Body, "username", "账号").len(4, 20).get()),
            "账号 的长度 必须 在 4 和 20 之间"
        );
        assert_eq!(
            err(p.str(In::Body, "password", "密码").len(6, 20).get()),
            "密码不能为空"
        );
        assert_eq!(err(p.str(In::Body, "s", "密码").get()), "密码不能为空");
        assert_eq!(
            err(p.int(In::Body, "page", "页码").min(1).get()),
            "页码 的值 `abc` 的类型不是 `int`"
        );
        assert_eq!(
            err(p.int(In::Body, "id", "申请表的id").min(1).get()),
            "申请表的id 的数值 必须 在 1 和 10000000000000000 之间"
        );
        assert_eq!(
            err(p
                .str(In::Body, "status", "处理状态")
                .one_of(&["pending", "refuse", "agree", "ignore"])
                .get()),
            "处理状态 的值 `yes` 必须在 [`pending`,`refuse`,`agree`,`ignore`] 中"
        );
        assert_eq!(
            err(p
                .int(In::Body, "f", "朋友是否可以看我的动态")
                .one_of(&[0, 1])
                .get()),
            "朋友是否可以看我的动态 的值 `2` 必须在 [`0`,`1`] 中"
        );
        assert_eq!(
            err(p.str(In::Body, "u", "用户设置").min_len(2).get()),
            "用户设置 的长度 必须 在 2 和 10000000 之间"
        );
        assert_eq!(
            err(p.int(In::Body, "f", "进群设置属性值").min(0).max(1).get()),
            "进群设置属性值 的数值 必须 大于等于 `0` 少于等于 `1`"
        );
    }

    #[test]
    fn ints_accept_numbers_and_decimal_strings_only() {
        let p = body(json!({"a":"+007","b":"1.5","c":1.0,"d":" 1","e":true}));
        assert_eq!(p.int(In::Body, "a", "a").get().ok(), Some(7));
        assert!(p.int(In::Body, "b", "b").get().is_err());
        assert_eq!(p.int(In::Body, "c", "c").get().ok(), Some(1));
        assert!(p.int(In::Body, "d", "d").get().is_err());
        assert_eq!(
            err(p.int(In::Body, "e", "e").get()),
            "e 的值 `true` 的类型不是 `int`"
        );
        assert_eq!(p.int(In::Body, "zz", "zz").min(1).or(10), 10);
        assert_eq!(
            p.int(In::Body, "b", "b").min(1).or(10),
            10,
            "invalid optional → default"
        );
    }

    #[test]
    fn lengths_ignore_variation_selectors_and_numbers_become_text() {
        let p = body(json!({"n":12345,"e":"❤\u{FE0F}"}));
        assert_eq!(
            p.str(In::Body, "n", "n").len(4, 20).get().ok().as_deref(),
            Some("12345")
        );
        assert_eq!(
            p.str(In::Body, "e", "e").len(1, 1).get().ok().as_deref(),
            Some("❤\u{FE0F}")
        );
    }

    #[test]
    fn forms_collect_repeated_and_bracketed_keys() {
        let m = form_to_map(b"userIds[]=29&userIds[]=30&x=1&y=a&y=b");
        assert_eq!(m["userIds"], json!(["29", "30"]));
        assert_eq!(m["x"], json!("1"));
        assert_eq!(m["y"], json!(["a", "b"]));
    }
}
