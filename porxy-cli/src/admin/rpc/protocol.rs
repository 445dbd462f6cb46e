//! JSON-RPC 2.0 (jsonrpc.org/specification), the envelope: one request or a batch, each
//! checked (`"jsonrpc": "2.0"`, a string `method`, `params` an array or an object, `id` a
//! string, a number or null), answered with `result` or `error` and its `id` as sent; a
//! notification (no `id`) answered with nothing, a batch of them with nothing at all. What a
//! method does is the caller's ([`Call`]). No IO.

use serde_json::{json, Map, Value};

/// Parse error: the body is not JSON.
pub const PARSE_ERROR: i64 = -32700;
/// Not a valid request object (or an empty batch).
pub const INVALID_REQUEST: i64 = -32600;
/// No such method.
pub const METHOD_NOT_FOUND: i64 = -32601;
/// The params do not fit the method.
pub const INVALID_PARAMS: i64 = -32602;
/// Something failed inside.
pub const INTERNAL_ERROR: i64 = -32603;

/// A method's refusal: its code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }
}

/// A request's params, by position or by name.
#[derive(Debug, Clone, Copy)]
pub struct Params<'a>(Option<&'a Value>);

impl<'a> Params<'a> {
    /// Param `name`, the `index`th by position.
    pub fn get(&self, index: usize, name: &str) -> Option<&'a Value> {
        match self.0 {
            Some(Value::Array(items)) => items.get(index),
            Some(Value::Object(named)) => named.get(name),
            _ => None,
        }
        .filter(|value| !value.is_null())
    }

    /// Param `name`, which the method needs.
    pub fn required(&self, index: usize, name: &str) -> Result<&'a Value, RpcError> {
        self.get(index, name)
            .ok_or_else(|| RpcError::new(INVALID_PARAMS, format!("missing param `{name}`")))
    }

    /// Refuses params beyond `names` (by name: any other name; by position: more of them).
    pub fn only(&self, names: &[&str]) -> Result<(), RpcError> {
        match self.0 {
            Some(Value::Array(items)) if items.len() > names.len() => Err(RpcError::new(
                INVALID_PARAMS,
                format!(
                    "{} params given, the method takes {} ({})",
                    items.len(),
                    names.len(),
                    names.join(", ")
                ),
            )),
            Some(Value::Object(named)) => match named.keys().find(|k| !names.contains(&k.as_str()))
            {
                Some(key) => Err(RpcError::new(
                    INVALID_PARAMS,
                    format!(
                        "unknown param `{key}`; the method takes {}",
                        names.join(", ")
                    ),
                )),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }
}

/// What a method does: its result, or its refusal.
pub trait Call {
    fn call(&self, method: &str, params: Params<'_>) -> Result<Value, RpcError>;
}

/// The answer to a request body: `None` when there is nothing to answer (notifications).
pub fn respond(body: &[u8], methods: &impl Call) -> Option<Value> {
    let request: Value = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(e) => return Some(error(Value::Null, PARSE_ERROR, format!("not JSON: {e}"))),
    };
    match request {
        Value::Array(batch) if batch.is_empty() => {
            Some(error(Value::Null, INVALID_REQUEST, "an empty batch".into()))
        }
        Value::Array(batch) => {
            let answers: Vec<Value> = batch
                .iter()
                .filter_map(|one| single(one, methods))
                .collect();
            (!answers.is_empty()).then_some(Value::Array(answers))
        }
        one => single(&one, methods),
    }
}

/// The answer to one request (`None` for a notification).
fn single(request: &Value, methods: &impl Call) -> Option<Value> {
    let Value::Object(object) = request else {
        return Some(error(
            Value::Null,
            INVALID_REQUEST,
            "a request must be an object".into(),
        ));
    };
    // An id of the wrong type is no id to echo: the answer's is null.
    let id = match object.get("id") {
        None => None,
        Some(id @ (Value::String(_) | Value::Number(_) | Value::Null)) => Some(id.clone()),
        Some(_) => {
            return Some(error(
                Value::Null,
                INVALID_REQUEST,
                "`id` must be a string, a number or null".into(),
            ))
        }
    };
    let checked = check(object);
    let answer = match checked {
        Err(why) => Err(RpcError::new(INVALID_REQUEST, why)),
        Ok((method, params)) => methods.call(method, params),
    };
    // A notification gets nothing back, even an error (the spec), unless the request was not
    // one at all.
    let id = match (id, &answer) {
        (Some(id), _) => id,
        (None, Err(e)) if e.code == INVALID_REQUEST => Value::Null,
        (None, _) => return None,
    };
    Some(match answer {
        Ok(result) => json!({"jsonrpc": "2.0", "result": result, "id": id}),
        Err(e) => error(id, e.code, e.message),
    })
}

/// The method and params of a well-formed request.
fn check(object: &Map<String, Value>) -> Result<(&str, Params<'_>), String> {
    if object.get("jsonrpc") != Some(&Value::String("2.0".into())) {
        return Err("`jsonrpc` must be \"2.0\"".into());
    }
    if let Some(key) = object
        .keys()
        .find(|k| !["jsonrpc", "method", "params", "id"].contains(&k.as_str()))
    {
        return Err(format!("unknown member `{key}`"));
    }
    let Some(Value::String(method)) = object.get("method") else {
        return Err("`method` must be a string".into());
    };
    let params = match object.get("params") {
        None => Params(None),
        Some(p @ (Value::Array(_) | Value::Object(_))) => Params(Some(p)),
        Some(_) => return Err("`params` must be an array or an object".into()),
    };
    Ok((method, params))
}

fn error(id: Value, code: i64, message: String) -> Value {
    json!({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": id})
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `echo(text)` answers its param; `fail` fails with code 1001.
    struct Echo;

    impl Call for Echo {
        fn call(&self, method: &str, params: Params<'_>) -> Result<Value, RpcError> {
            match method {
                "echo" => {
                    params.only(&["text"])?;
                    params.required(0, "text").cloned()
                }
                "fail" => Err(RpcError::new(1001, "no such tunnel")),
                other => Err(RpcError::new(
                    METHOD_NOT_FOUND,
                    format!("no method `{other}`"),
                )),
            }
        }
    }

    fn answer(body: &str) -> Option<Value> {
        respond(body.as_bytes(), &Echo)
    }

    #[test]
    fn a_call_echoes_its_id_exactly() {
        for id in [json!(1), json!("a-1"), json!(null), json!(2.5)] {
            let request = json!({"jsonrpc": "2.0", "method": "echo", "params": ["hi"], "id": id});
            assert_eq!(
                answer(&request.to_string()),
                Some(json!({"jsonrpc": "2.0", "result": "hi", "id": id}))
            );
        }
        let named = r#"{"jsonrpc":"2.0","method":"echo","params":{"text":"by name"},"id":7}"#;
        assert_eq!(answer(named).unwrap()["result"], "by name");
    }

    #[test]
    fn every_standard_error() {
        let code = |body: &str| answer(body).unwrap()["error"]["code"].clone();
        assert_eq!(code("{oops"), json!(PARSE_ERROR));
        assert_eq!(answer("{oops").unwrap()["id"], Value::Null);
        assert_eq!(code("[]"), json!(INVALID_REQUEST));
        assert_eq!(
            code(r#"{"jsonrpc":"1.0","method":"echo","id":1}"#),
            json!(INVALID_REQUEST)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","method":5,"id":1}"#),
            json!(INVALID_REQUEST)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","method":"echo","params":"x","id":1}"#),
            json!(INVALID_REQUEST)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","method":"echo","id":{}}"#),
            json!(INVALID_REQUEST)
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","method":"nope","id":1}"#),
            json!(METHOD_NOT_FOUND)
        );
        let missing = answer(r#"{"jsonrpc":"2.0","method":"echo","params":{},"id":1}"#).unwrap();
        assert_eq!(missing["error"]["code"], json!(INVALID_PARAMS));
        assert_eq!(missing["error"]["message"], "missing param `text`");
        let extra =
            answer(r#"{"jsonrpc":"2.0","method":"echo","params":{"txt":1},"id":1}"#).unwrap();
        assert_eq!(
            extra["error"]["message"],
            "unknown param `txt`; the method takes text"
        );
        assert_eq!(
            code(r#"{"jsonrpc":"2.0","method":"fail","id":1}"#),
            json!(1001)
        );
    }

    #[test]
    fn notifications_get_nothing_and_batches_answer_the_rest() {
        assert_eq!(
            answer(r#"{"jsonrpc":"2.0","method":"echo","params":["x"]}"#),
            None
        );
        assert_eq!(answer(r#"{"jsonrpc":"2.0","method":"fail"}"#), None);
        assert_eq!(
            answer(r#"[{"jsonrpc":"2.0","method":"echo","params":["x"]}]"#),
            None,
            "a batch of notifications: nothing"
        );
        let batch = answer(
            r#"[{"jsonrpc":"2.0","method":"echo","params":["a"],"id":1},
                {"jsonrpc":"2.0","method":"echo","params":["b"]},
                {"jsonrpc":"2.0","method":"nope","id":"two"},
                5]"#,
        )
        .unwrap();
        let batch = batch.as_array().unwrap();
        assert_eq!(batch.len(), 3);
        assert_eq!(batch[0]["result"], "a");
        assert_eq!(
            (batch[1]["id"].clone(), batch[1]["error"]["code"].clone()),
            (json!("two"), json!(METHOD_NOT_FOUND))
        );
        assert_eq!(
            (batch[2]["id"].clone(), batch[2]["error"]["code"].clone()),
            (Value::Null, json!(INVALID_REQUEST))
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_get_an_answer_or_none_never_a_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = respond(&bytes, &Echo);
        }
    }
}
