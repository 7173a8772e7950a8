//! The official `openai` Python SDK checks what this module writes: Response objects, event
//! streams and stored items are produced from realistic chat answers and streams into a temp
//! dir, then `tests/sdk/check_responses_shapes.py` validates them with the SDK's own types and
//! feeds them through its real client (`responses.create`, `.stream`, `.parse`,
//! `.input_items.list`). The venv is the SDK tests' (`AI_GATEWAY_VENV`, default
//! `~/.cache/ai-gateway/venv`, made by `scripts/test.sh`); without it this test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;
use serde_json::value::RawValue;

use super::*;
use crate::sse::SseParser;
use crate::translate::Dropped;

const CREATED: u64 = 1_764_000_000;

fn ids(n: u32) -> ResponseIds {
    ResponseIds::with(
        format!("resp_0123456789abcdef0123456789abcd{n:02}"),
        CREATED,
    )
}

fn request(body: &serde_json::Value, history: &[&RawValue], n: u32) -> ResponsesRequest {
    let mut dropped = Dropped::default();
    responses_request_to_chat(
        body.to_string().as_bytes(),
        history,
        "upstream-model",
        &ids(n),
        &mut dropped,
    )
    .expect("translates")
}

fn write(dir: &Path, rel: &str, bytes: &[u8]) {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write fixture");
}

fn expect(status: &str, output_text: &str, error: &str) -> Vec<u8> {
    json!({"status": status, "output_text": output_text, "error": error})
        .to_string()
        .into_bytes()
}

/// A chat chunk with the given delta (and finish reason).
fn chunk(delta: serde_json::Value, finish: Option<&str>) -> String {
    json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m",
        "choices":[{"index":0,"delta":delta,"logprobs":null,"finish_reason":finish}]})
    .to_string()
}

fn usage_chunk() -> String {
    json!({"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],
        "usage":{"prompt_tokens":31,"completion_tokens":12,"total_tokens":43,
        "prompt_tokens_details":{"cached_tokens":8},"completion_tokens_details":{"reasoning_tokens":5}}})
    .to_string()
}

fn chat_answer(message: serde_json::Value, finish: &str) -> Vec<u8> {
    json!({"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m",
        "choices":[{"index":0,"message":message,"logprobs":null,"finish_reason":finish}],
        "usage":{"prompt_tokens":31,"completion_tokens":12,"total_tokens":43}})
    .to_string()
    .into_bytes()
}

/// Every echoed field set, so the SDK checks each one's shape.
fn full_request() -> serde_json::Value {
    json!({
        "model": "gpt-4o", "instructions": "Answer in one sentence.",
        "input": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [
            {"type": "function", "name": "get_weather", "description": "Weather by city",
             "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
             "strict": false},
            {"type": "web_search"}
        ],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": false, "max_output_tokens": 300, "max_tool_calls": 3,
        "temperature": 0.2, "top_p": 0.9, "top_logprobs": 2, "truncation": "auto",
        "reasoning": {"effort": "low", "summary": "auto"},
        "text": {"format": {"type": "text"}, "verbosity": "low"},
        "metadata": {"session": "s-1"}, "store": false, "previous_response_id": "resp_prev",
        "user": "user-1", "safety_identifier": "sid-1", "prompt_cache_key": "k-1",
        "service_tier": "default", "background": false
    })
}

fn answers(dir: &Path) {
    let plain = request(&json!({"model": "gpt-4o", "input": "hi"}), &[], 1);
    let full = request(&full_request(), &[], 2);
    let schema = request(
        &json!({"model": "gpt-4o", "input": "weather?", "text": {"format": {
            "type": "json_schema", "name": "weather", "strict": true,
            "schema": {"type": "object", "properties": {"city": {"type": "string"}, "celsius": {"type": "number"}},
                       "required": ["city", "celsius"], "additionalProperties": false}}}}),
        &[],
        3,
    );
    let cases: [(&str, &ResponsesHead, Vec<u8>, &str, &str); 7] = [
        (
            "text",
            &plain.head,
            chat_answer(
                json!({"role":"assistant","content":"Hello! \"Quoted\"\nnew line é😀","refusal":null}),
                "stop",
            ),
            "completed",
            "Hello! \"Quoted\"\nnew line é😀",
        ),
        (
            "full_echo",
            &full.head,
            chat_answer(
                json!({"role":"assistant","content":"It is 14°C.","refusal":null}),
                "stop",
            ),
            "completed",
            "It is 14°C.",
        ),
        (
            "tools",
            &plain.head,
            chat_answer(
                json!({"role":"assistant","content":"Let me check.","reasoning_content":"The user wants weather.",
                "tool_calls":[
                    {"id":"call_a1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},
                    {"id":"call_b2","type":"function","function":{"name":"get_time","arguments":"{\"tz\":\"Europe/Paris\"}"}}]}),
                "tool_calls",
            ),
            "completed",
            "Let me check.",
        ),
        (
            "length",
            &plain.head,
            chat_answer(
                json!({"role":"assistant","content":"The answer is long and"}),
                "length",
            ),
            "incomplete",
            "The answer is long and",
        ),
        (
            "content_filter",
            &plain.head,
            chat_answer(
                json!({"role":"assistant","content":null,"refusal":"I can't help with that."}),
                "content_filter",
            ),
            "incomplete",
            "",
        ),
        (
            "empty",
            &plain.head,
            chat_answer(json!({"role":"assistant","content":null}), "stop"),
            "completed",
            "",
        ),
        (
            "json_schema",
            &schema.head,
            chat_answer(
                json!({"role":"assistant","content":"{\"city\":\"Paris\",\"celsius\":14.5}"}),
                "stop",
            ),
            "completed",
            "{\"city\":\"Paris\",\"celsius\":14.5}",
        ),
    ];
    for (i, (name, head, chat, status, text)) in cases.into_iter().enumerate() {
        let a = chat_response_to_responses(&chat, head, &ids(10 + i as u32)).expect("translates");
        assert_eq!(a.status, status, "{name}");
        write(dir, &format!("answers/{name}.json"), &a.body);
        write(
            dir,
            &format!("answers/{name}.expect.json"),
            &expect(status, text, ""),
        );
        write(dir, &format!("items/output_{name}.json"), &a.output_items);
    }
}

/// Runs chunks through the converter (as SSE off the wire, cut into small network reads).
fn run_stream(
    head: &ResponsesHead,
    n: u32,
    chunks: &[String],
    done: bool,
) -> (Vec<u8>, ResponsesAnswer) {
    let mut wire = String::new();
    for c in chunks {
        wire.push_str(&format!("data: {c}\n\n"));
    }
    if done {
        wire.push_str("data: [DONE]\n\n");
    }
    let mut conv = ChatToResponsesStream::new(head.clone(), ids(n));
    let mut parser = SseParser::new();
    let mut out = Vec::new();
    for piece in wire.as_bytes().chunks(37) {
        parser.push(piece, |e| conv.on_data(e.data, &mut out));
    }
    conv.finish(&mut out);
    let answer = conv
        .take_answer()
        .expect("the stream ended with a Response");
    (out, answer)
}

fn streams(dir: &Path) {
    let plain = request(
        &json!({"model": "gpt-4o", "input": "hi", "stream": true}),
        &[],
        20,
    );
    let words: Vec<String> = (0..16).map(|i| format!("word{i} \"q\"\n")).collect();
    let mut text_chunks = vec![chunk(json!({"role":"assistant","content":""}), None)];
    text_chunks.extend(words.iter().map(|w| chunk(json!({"content": w}), None)));
    text_chunks.push(chunk(json!({}), Some("stop")));
    text_chunks.push(usage_chunk());
    let all_words = words.concat();

    let tools = vec![
        chunk(
            json!({"role":"assistant","reasoning_content":"Think"}),
            None,
        ),
        chunk(json!({"reasoning_content":"ing."}), None),
        chunk(json!({"content":"Checking."}), None),
        chunk(
            json!({"tool_calls":[{"index":0,"id":"call_a1","type":"function","function":{"name":"get_weather","arguments":""}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls":[{"index":1,"id":"call_b2","type":"function","function":{"name":"get_time","arguments":"{}"}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
        usage_chunk(),
    ];
    let length = vec![
        chunk(json!({"role":"assistant","content":"Cut "}), None),
        chunk(json!({"content":"short"}), Some("length")),
        usage_chunk(),
    ];
    let refusal = vec![
        chunk(json!({"role":"assistant","content":"Well, "}), None),
        chunk(json!({"refusal":"I can't help with that."}), None),
        chunk(json!({}), Some("stop")),
    ];
    let error = vec![
        chunk(json!({"role":"assistant","content":"Partial"}), None),
        json!({"error":{"message":"upstream overloaded","type":"overloaded_error","code":null}})
            .to_string(),
    ];
    let truncated = vec![chunk(json!({"role":"assistant","content":"Partial"}), None)];
    let no_done = vec![
        chunk(json!({"role":"assistant","content":"No DONE here"}), None),
        chunk(json!({}), Some("stop")),
    ];
    // (name, chunks, whether [DONE] ends them, status, output_text, error)
    type Case<'a> = (&'a str, Vec<String>, bool, &'a str, &'a str, &'a str);
    let cases: [Case; 8] = [
        ("text", text_chunks, true, "completed", &all_words, ""),
        ("tools", tools, true, "completed", "Checking.", ""),
        ("length", length, true, "incomplete", "Cut short", ""),
        ("refusal", refusal, true, "completed", "Well, ", ""),
        (
            "error",
            error,
            false,
            "failed",
            "Partial",
            "upstream overloaded",
        ),
        (
            "truncated",
            truncated,
            false,
            "failed",
            "Partial",
            "ended before",
        ),
        ("no_done", no_done, false, "completed", "No DONE here", ""),
        ("empty", Vec::new(), true, "completed", "", ""),
    ];
    for (i, (name, chunks, done, status, text, error)) in cases.into_iter().enumerate() {
        let (events, answer) = run_stream(&plain.head, 30 + i as u32, &chunks, done);
        assert_eq!(answer.status, status, "{name}");
        write(dir, &format!("streams/{name}.sse"), &events);
        write(
            dir,
            &format!("streams/{name}.expect.json"),
            &expect(status, text, error),
        );
        write(dir, &format!("answers/stream_{name}.json"), &answer.body);
        write(
            dir,
            &format!("answers/stream_{name}.expect.json"),
            &expect(status, text, ""),
        );
        write(
            dir,
            &format!("items/stream_output_{name}.json"),
            &answer.output_items,
        );
    }
}

fn stored_items(dir: &Path) {
    let input = json!({"model": "gpt-4o", "input": [
        {"role": "developer", "content": "Be terse."},
        {"role": "user", "content": [
            {"type": "input_text", "text": "Look:"},
            {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
            {"type": "input_image", "file_id": "file-abc"},
            {"type": "input_file", "file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}
        ]},
        {"type": "message", "role": "assistant", "id": "msg_given", "content": [
            {"type": "output_text", "text": "Seen.", "annotations": []},
            {"type": "refusal", "refusal": "Not that part."}
        ]},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "thought"}]},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": "{\"q\":\"x\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "found"},
        {"type": "function_call", "id": "fc_given", "call_id": "call_2", "name": "lookup", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_2", "output": [{"type": "input_text", "text": "none"}]},
        {"role": "user", "content": "Thanks"}
    ]});
    write(
        dir,
        "items/input_all_kinds.json",
        &request(&input, &[], 40).input_items,
    );
    let text = json!({"model": "gpt-4o", "input": "just a string"});
    write(
        dir,
        "items/input_string.json",
        &request(&text, &[], 41).input_items,
    );
}

fn venv_python() -> PathBuf {
    let venv = std::env::var_os("AI_GATEWAY_VENV").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/ai-gateway/venv")
        },
        PathBuf::from,
    );
    let python = venv.join("bin/python");
    assert!(
        python.is_file(),
        "{} is missing: create the SDK tests' venv (scripts/test.sh does: python3 -m venv {} && \
         {}/bin/pip install -r tests/sdk/requirements.txt) or point AI_GATEWAY_VENV at one",
        python.display(),
        venv.display(),
        venv.display()
    );
    python
}

#[test]
fn official_sdk_accepts_responses_shapes() {
    let python = venv_python();
    let tmp = tempfile::tempdir().expect("temp dir");
    answers(tmp.path());
    streams(tmp.path());
    stored_items(tmp.path());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(python)
        .args([
            "-m",
            "pytest",
            "-q",
            "--noconftest",
            "-p",
            "no:cacheprovider",
            "tests/sdk/check_responses_shapes.py",
        ])
        .current_dir(root)
        .env("RESPONSES_SHAPES_DIR", tmp.path())
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("OPENAI_BASE_URL")
        .output()
        .expect("runs the venv's python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the openai SDK refused what the translation wrote:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every check ran: none skipped, none deselected.
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        summary.contains(" passed") && !summary.contains("skipped"),
        "unexpected pytest summary: {summary}"
    );
    let passed: usize = summary
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let count = |sub: &str, ext: &str| {
        std::fs::read_dir(tmp.path().join(sub))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.ends_with(ext) && !name.ends_with(".expect.json")
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    // Per answer: validate + create; per stream: validate + stream helper + create(stream);
    // per item list: validate + input_items.list; and the one structured-output parse.
    let expected = 2 * count("answers", ".json")
        + 3 * count("streams", ".sse")
        + 2 * count("items", ".json")
        + 1;
    assert_eq!(passed, expected, "not every check ran: {summary}");
}
