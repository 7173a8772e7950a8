use super::*;

#[test]
fn splices_model_without_touching_the_rest() {
    let body = br#"{ "messages":[{"role":"user","content":"hi \"there\""}], "model" : "fast", "x":{"model":"keep"} }"#;
    let head = parse_openai_chat(body).unwrap();
    assert_eq!(head.model, "fast");
    let out = splice_model(&Bytes::from_static(body), &head.model_span, "gpt-4o-mini");
    let expected = br#"{ "messages":[{"role":"user","content":"hi \"there\""}], "model" : "gpt-4o-mini", "x":{"model":"keep"} }"#;
    assert_eq!(&out[..], &expected[..]);
}

#[test]
fn the_same_model_forwards_the_original_bytes() {
    let body = Bytes::from_static(
        br#"{"model" : "gpt-4o-mini","messages":[{"role":"user","content":"x"}]}"#,
    );
    let head = parse_openai_chat(&body).unwrap();
    let out = splice_model(&body, &head.model_span, "gpt-4o-mini");
    assert_eq!(out.as_ptr(), body.as_ptr(), "no copy");
    // Written with an escape, the same name is spliced (the bytes differ).
    let body = Bytes::from_static(
        br#"{"model":"gpt\u002d4o","messages":[{"role":"user","content":"x"}]}"#,
    );
    let head = parse_openai_chat(&body).unwrap();
    let out = splice_model(&body, &head.model_span, "gpt-4o");
    assert_eq!(
        &out[..],
        br#"{"model":"gpt-4o","messages":[{"role":"user","content":"x"}]}"#
    );
}

#[test]
fn escaped_model_names() {
    let body = br#"{"model":"a\u0062c","messages":[{"role":"user","content":"x"}]}"#;
    let head = parse_openai_chat(body).unwrap();
    assert_eq!(head.model, "abc");
    let out = splice_model(&Bytes::from_static(body), &head.model_span, "q\"z");
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["model"], "q\"z");
}

#[test]
fn bad_inputs_are_400_with_the_field() {
    let cases: &[(&[u8], &str)] = &[
            (b"{not json", "not valid JSON"),
            (b"[1,2]", "JSON object"),
            (br#"{"messages":[{"role":"user","content":"x"}]}"#, "model"),
            (br#"{"model":"m"}"#, "messages"),
            (br#"{"model":"m","messages":[]}"#, "at least one"),
            (
                br#"{"model":5,"messages":[{"role":"user","content":"x"}]}"#,
                "model",
            ),
            (
                br#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"}"#,
                "stream",
            ),
            (
                br#"{"model":"m","messages":[{"role":"robot","content":"x"}]}"#,
                "messages[0].role",
            ),
            (
                br#"{"model":"m","messages":[{"role":"user","content":5}]}"#,
                "messages[0].content",
            ),
            (
                br#"{"model":"m","messages":[{"role":"user","content":"a"},{"role":"user","content":[[{"type":"text","text":"x"}]]}]}"#,
                "messages[1].content[0]: ",
            ),
            (
                br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"x"},{"text":"no type"}]}]}"#,
                "messages[0].content[1]: ",
            ),
            (
                br#"{"model":"m","messages":[{"role":"user","content":[{"type":7}]}]}"#,
                "messages[0].content[0]: ",
            ),
            (
                br#"{"model":"m","messages":[{"role":"user","content":["text"]}]}"#,
                "messages[0].content[0]: ",
            ),
            (
                br#"{"model":"m","messages":[{"role":"user","content":[["text"]]}]}"#,
                "messages[0].content[0]: ",
            ),
            (br#"{"model":"m","messages":[{"content":"x"}]}"#, "role"),
            (b"{\"model\":\"m\xff\"}", "UTF-8"),
        ];
    for (body, needle) in cases {
        match parse_openai_chat(body) {
            Err(Error::InvalidRequest(msg)) => {
                assert!(msg.contains(needle), "{msg:?} should mention {needle}")
            }
            other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(body)),
        }
    }
}

#[test]
fn content_shapes() {
    for ok in [
            &br#"{"model":"m","messages":[{"role":"user","content":null}]}"#[..],
            br#"{"model":"m","messages":[{"role":"user","content":[]}]}"#,
            br#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:x","detail":"low"}},{"type":"text","text":"[{\"a\"]"}]}]}"#,
        ] {
            assert!(
                parse_openai_chat(ok).is_ok(),
                "{}",
                String::from_utf8_lossy(ok)
            );
        }
    let nested = br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":[[1,2]]}]}"#;
    match parse_anthropic_messages(nested) {
        Err(Error::InvalidRequest(m)) => {
            assert!(m.starts_with("messages.2.content[0]: "), "{m}")
        }
        other => panic!("{other:?}"),
    }
    let null = br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":null}]}"#;
    assert!(matches!(
        parse_anthropic_messages(null),
        Err(Error::InvalidRequest(m)) if m.starts_with("messages.0.content: ")
    ));
    let blocks = br#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]}]}"#;
    assert!(parse_anthropic_messages(blocks).is_ok());
}

#[test]
fn anthropic_requires_max_tokens() {
    let body = br#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
    assert!(matches!(
        parse_anthropic_messages(body),
        Err(Error::InvalidRequest(m)) if m.contains("max_tokens")
    ));
    let ok = br#"{"model":"m","max_tokens":5,"stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"x"}]}]}"#;
    let h = parse_anthropic_messages(ok).unwrap();
    assert!(h.stream);
    assert_eq!(h.max_tokens, Some(5));
}

#[test]
fn embeddings_inputs() {
    assert!(parse_embeddings(br#"{"model":"e","input":"hello"}"#).is_ok());
    assert!(parse_embeddings(br#"{"model":"e","input":["a","b"]}"#).is_ok());
    assert!(parse_embeddings(br#"{"model":"e","input":5}"#).is_err());
    assert!(parse_embeddings(br#"{"model":"e","input":[]}"#).is_err());
    assert!(parse_embeddings(br#"{"model":"e","input":"a","encoding_format":"hex"}"#).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_the_prompt_as_the_token_counter_does() {
    let mut bpe = None;
    for _ in 0..500 {
        bpe = crate::tokens::tokenizer();
        if bpe.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let bpe = bpe.expect("the tokenizer loads");
    for body in [
            &br#"{"model":"m","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"Hello, world! How are you today?"}]}"#[..],
            br#"{"model":"m","messages":[{"role":"user","name":"bob","content":[{"type":"text","text":"Hi"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"there"}]}]}"#,
            br#"{"model":"m","messages":[{"role":"user","content":"line one\nline \"two\" \u00e9"}]}"#,
            br#"{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"c1","content":"18C"}], "tools" : [ {"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}} , {"type":"function","function":{"name":"x"}} ] }"#,
            br#"{"model":"m","messages":[{"role":"user","content":"hi","name":7}],"tools":[]}"#,
        ] {
            let head = parse_openai_chat_counting(body, |model| model == "m").unwrap();
            let apart = crate::tokens::count_openai_chat_with(bpe, body);
            // A `name` that is not a string fails the counter's own parse; the head parse counts
            // the rest.
            if apart.is_some() {
                assert_eq!(head.prompt_tokens, apart, "{}", String::from_utf8_lossy(body));
            } else {
                assert!(head.prompt_tokens.is_some());
            }
            assert_eq!(
                parse_openai_chat_counting(body, |_| false).unwrap().prompt_tokens,
                None
            );
        }
}
