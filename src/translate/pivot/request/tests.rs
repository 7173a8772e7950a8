use super::*;

fn parse(body: &str) -> (ChatRequest<'_>, Dropped) {
    let mut d = Dropped::default();
    let r = ChatRequest::parse(body.as_bytes(), &mut d).expect("parses");
    (r, d)
}

#[test]
fn drops_what_nothing_carries_and_keeps_defaults_quiet() {
    let (_, d) = parse(
        r#"{"messages":[],"logprobs":false,"store":false,"service_tier":"auto",
                "modalities":["text"],"n":1}"#,
    );
    assert!(d.is_empty(), "{d:?}");
    let (_, d) = parse(
        r#"{"messages":[],"logprobs":true,"top_logprobs":2,"store":true,"metadata":{},
                "modalities":["text","audio"],"audio":{},"logit_bias":{"1":2},
                "tools":[{"type":"web_search"}],"tool_choice":"auto"}"#,
    );
    assert_eq!(
        d.join(","),
        "logprobs,top_logprobs,logit_bias,store,metadata,modalities,audio,tools[].type,tool_choice"
    );
}

#[test]
fn tool_choices() {
    let tc = |s: &str| {
        let raw: Box<RawValue> = serde_json::from_str(s).expect("json");
        match ToolChoice::parse(&raw) {
            ToolChoice::Auto => "auto".to_owned(),
            ToolChoice::None => "none".to_owned(),
            ToolChoice::Required => "required".to_owned(),
            ToolChoice::Function(n) => format!("fn {}", n.decode()),
            ToolChoice::Allowed { required, names } => format!(
                "allowed {required} {}",
                names
                    .iter()
                    .map(|n| n.decode())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            ToolChoice::Other => "other".to_owned(),
        }
    };
    assert_eq!(tc(r#""auto""#), "auto");
    assert_eq!(tc(r#""none""#), "none");
    assert_eq!(tc(r#""required""#), "required");
    assert_eq!(tc(r#""sometimes""#), "other");
    assert_eq!(
        tc(r#"{"type":"function","function":{"name":"get_weather"}}"#),
        "fn get_weather"
    );
    assert_eq!(
        tc(
            r#"{"type":"allowed_tools","allowed_tools":{"mode":"required","tools":[
                {"type":"function","function":{"name":"a"}},{"type":"function","function":{"name":"b"}}]}}"#
        ),
        "allowed true a b"
    );
    assert_eq!(tc(r#"{"type":"custom","custom":{"name":"x"}}"#), "other");
}

#[test]
fn finds_tool_names_of_earlier_calls() {
    let (r, _) = parse(
        r#"{"messages":[
              {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
              {"role":"tool","tool_call_id":"c1","content":"x"}]}"#,
    );
    assert_eq!(
        r.tool_name("c1", 1).map(|n| n.decode().into_owned()),
        Some("f".into())
    );
    assert!(r.tool_name("c1", 0).is_none());
    assert!(r.tool_name("c2", 2).is_none());
}

#[test]
fn budgets() {
    assert_eq!(thinking_budget("none"), Some(0));
    assert_eq!(thinking_budget("minimal"), Some(0));
    assert_eq!(thinking_budget("low"), Some(1024));
    assert_eq!(thinking_budget("medium"), Some(8192));
    assert_eq!(thinking_budget("high"), Some(24576));
    assert_eq!(thinking_budget("extreme"), None);
}

#[test]
fn bad_bodies_are_client_errors() {
    let mut d = Dropped::default();
    for body in [
        "not json",
        r#"{"model":"x"}"#,
        r#"{"messages":{}}"#,
        r#"{"messages":[{"role":"user","content":5}]}"#,
        r#"{"messages":[],"stop":5}"#,
    ] {
        assert!(
            ChatRequest::parse(body.as_bytes(), &mut d).is_err(),
            "{body}"
        );
    }
}
