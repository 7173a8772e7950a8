use super::*;

fn scalar(n: &Node) -> (&str, Style) {
    match &n.kind {
        Kind::Scalar { text, style } => (text, *style),
        _ => panic!("not a scalar: {n:?}"),
    }
}

#[test]
fn core_schema() {
    assert_eq!(resolve(""), Resolved::Null);
    assert_eq!(resolve("~"), Resolved::Null);
    assert_eq!(resolve("NULL"), Resolved::Null);
    assert_eq!(resolve("True"), Resolved::Bool(true));
    assert_eq!(resolve("false"), Resolved::Bool(false));
    assert_eq!(resolve("yes"), Resolved::Str);
    assert_eq!(resolve("42"), Resolved::UInt(42));
    assert_eq!(resolve("+42"), Resolved::UInt(42));
    assert_eq!(resolve("-42"), Resolved::Int(-42));
    assert_eq!(resolve("0x1F"), Resolved::UInt(31));
    assert_eq!(resolve("0o17"), Resolved::UInt(15));
    assert_eq!(resolve("0.15"), Resolved::Float(0.15));
    assert_eq!(resolve(".5"), Resolved::Float(0.5));
    assert_eq!(resolve("1e3"), Resolved::Float(1000.0));
    assert_eq!(resolve("-.inf"), Resolved::Float(f64::NEG_INFINITY));
    assert!(matches!(resolve(".nan"), Resolved::Float(f) if f.is_nan()));
    assert_eq!(resolve("2024-10-21"), Resolved::Str);
    assert_eq!(resolve("10MiB"), Resolved::Str);
    assert_eq!(resolve("1_000"), Resolved::Str);
    assert_eq!(resolve("0x"), Resolved::Str);
    assert_eq!(resolve("."), Resolved::Str);
    assert_eq!(resolve("1.2.3"), Resolved::Str);
}

#[test]
fn tree_lines_and_styles() {
    let text = "a: 1\nlist:\n  - name: x\n    v: &an [1, 'two']\n  - name: y\n    w: *an\nb:\nc: \"q\"\nd: !!str 5\n";
    let root = parse(text).unwrap();
    let lines = root.line_map();
    assert_eq!(lines.get("a"), Some(1));
    assert_eq!(lines.get("list"), Some(2));
    assert_eq!(lines.get("list[0]"), Some(3));
    assert_eq!(lines.get("list[0].v[1]"), Some(4));
    assert_eq!(lines.get("list[1].name"), Some(5));
    assert_eq!(lines.get("list[1].w"), Some(6));
    assert_eq!(lines.get("list[1].w[1]"), Some(4));
    assert_eq!(lines.get("c"), Some(8));
    assert_eq!(lines.get("list[1].nope.deeper"), Some(5));
    assert_eq!(lines.get("zzz"), Some(1));
    let Kind::Map(entries) = &root.kind else {
        panic!()
    };
    assert_eq!(scalar(&entries[2].value), ("", Style::Plain));
    assert_eq!(scalar(&entries[3].value), ("q", Style::Quoted));
    assert_eq!(scalar(&entries[4].value), ("5", Style::Quoted));
    let Kind::Map(item) = &match &entries[1].value.kind {
        Kind::Seq(items) => items[1].clone(),
        _ => panic!(),
    }
    .kind
    else {
        panic!()
    };
    assert_eq!(
        item[1].value.kind,
        Kind::Seq(vec![
            Node {
                kind: Kind::Scalar {
                    text: "1".into(),
                    style: Style::Plain
                },
                line: 4
            },
            Node {
                kind: Kind::Scalar {
                    text: "two".into(),
                    style: Style::Quoted
                },
                line: 4
            },
        ])
    );
}

#[test]
fn flow_style() {
    let root = parse("{a: [1, {b: c}], d: \"e\"}").unwrap();
    let lines = root.line_map();
    assert_eq!(lines.get("a[1].b"), Some(1));
    assert!(matches!(root.kind, Kind::Map(ref e) if e.len() == 2));
}

#[test]
fn empty_document_is_null() {
    let root = parse("").unwrap();
    assert_eq!(scalar(&root), ("", Style::Plain));
    let root = parse("# only a comment\n").unwrap();
    assert_eq!(scalar(&root), ("", Style::Plain));
}

#[test]
fn duplicate_key() {
    let e = parse("a: 1\nb:\n  c: 1\n  c: 2\n").unwrap_err();
    assert_eq!(e.line, Some(4));
    assert_eq!(e.path, "b.c");
    assert_eq!(e.message, "duplicate key \"c\"");
    assert_eq!(e.hint.as_deref(), Some("first defined at line 3"));
    let e = parse("l:\n  - x: [1, {y: 1, y: 2}]\n").unwrap_err();
    assert_eq!(e.path, "l[0].x[1].y");
    assert_eq!(e.line, Some(2));
    let e = parse("a: 1\na: 2\n").unwrap_err();
    assert_eq!(e.path, "a");
}

#[test]
fn bom_and_crlf() {
    let root = parse("\u{feff}a: 1\r\nb:\r\n  c: 2\r\n").unwrap();
    let lines = root.line_map();
    assert_eq!(lines.get("b.c"), Some(3));
    assert!(matches!(root.kind, Kind::Map(ref e) if e[0].key == "a"));
}

#[test]
fn multi_document() {
    let e = parse("a: 1\n---\nb: 2\n").unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("more than one YAML document"), "{e:?}");
}

#[test]
fn syntax_error_has_line() {
    let e = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
    assert!(e.message.starts_with("invalid YAML"), "{e:?}");
    assert!(e.line.is_some());
    let e = parse("a: *nope\n").unwrap_err();
    assert_eq!(e.line, Some(1));
}

#[test]
fn non_scalar_key() {
    let e = parse("? [a]\n: b\n").unwrap_err();
    assert_eq!(e.message, "a mapping key must be a scalar");
}

#[test]
fn alias_bomb_is_bounded() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("too large"), "{e:?}");
}

#[test]
fn deep_nesting_is_bounded() {
    let text = format!("{}{}", "[".repeat(100), "]".repeat(100));
    let e = parse(&text).unwrap_err();
    assert_eq!(e.message, "nesting too deep");
}
