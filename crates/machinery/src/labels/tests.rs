use super::*;
use serde_json::json;

fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn parses_and_renders_canonically() {
    let cases = [
        ("", ""),
        ("x=a", "x=a"),
        ("x==a", "x==a"),
        ("x!=a", "x!=a"),
        ("y=b,x=a", "x=a,y=b"),
        ("x in (c,a,b)", "x in (a,b,c)"),
        ("x notin (a)", "x notin (a)"),
        ("x", "x"),
        ("!x", "!x"),
        ("  x  =  a  ,  !y ", "x=a,!y"),
        (
            "x in (foo,,baz),y,z notin ()",
            "x in (,baz,foo),y,z notin ()",
        ),
        ("x=", "x="),
        ("x=,z= ", "x=,z="),
        ("x>1", "x>1"),
        ("x<5", "x<5"),
        ("x in (in)", "x in (in)"),
        ("in=notin", "in=notin"),
        ("app.kubernetes.io/name=web", "app.kubernetes.io/name=web"),
        ("x in (a,a,b)", "x in (a,b)"),
        ("x\tin\t(a)", "x in (a)"),
    ];
    for (input, want) in cases {
        let s = Selector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!(s.to_string(), want, "{input:?}");
        // The canonical form parses back to the same selector.
        assert_eq!(Selector::parse(want).unwrap(), s, "{want:?}");
    }
}

#[test]
fn syntax_errors_use_upstream_wording() {
    let cases = [
        ("x=a b", "found 'b', expected: ',' or 'end of string'"),
        ("x=a,", "found '', expected: identifier after ','"),
        (
            ",x",
            "found ',', expected: !, identifier, or 'end of string'",
        ),
        (
            "x in a",
            "unable to parse requirement: found 'a' expected: '('",
        ),
        (
            "x in (a",
            "unable to parse requirement: found '', expected: ',' or ')'",
        ),
        (
            "x in (a b)",
            "unable to parse requirement: found 'b', expected: ',' or ')'",
        ),
        (
            "x in (=)",
            "unable to parse requirement: found '=', expected: ',', ')' or identifier",
        ),
        (
            "x y",
            "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt",
        ),
        (
            "!",
            "unable to parse requirement: found '', expected: identifier",
        ),
        (
            "x==(",
            "unable to parse requirement: found '(', expected: identifier",
        ),
        ("x=a=b", "found '=', expected: ',' or 'end of string'"),
    ];
    for (input, want) in cases {
        let err = Selector::parse(input).unwrap_err();
        assert_eq!(err.to_string(), want, "{input:?}");
    }
}

#[test]
fn invalid_keys_and_values_are_rejected() {
    let err = Selector::parse("app:monolith").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to parse requirement: <nil>: Invalid value: \"app:monolith\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    );
    let err = Selector::parse("app=-bad").unwrap_err().to_string();
    assert!(
        err.starts_with("unable to parse requirement: values[0][app]: Invalid value: \"-bad\": a valid label must be"),
        "{err}"
    );
    let err = Selector::parse("x>a").unwrap_err().to_string();
    assert_eq!(
        err,
        "unable to parse requirement: values[0]: Invalid value: \"a\": for 'Gt', 'Lt' operators, the value must be an integer"
    );
    assert!(Selector::parse(&format!("a={}", "v".repeat(64))).is_err());
}

#[test]
fn matching() {
    let labels = set(&[("app", "web"), ("tier", "front"), ("n", "7")]);
    let cases = [
        ("", true),
        ("app=web", true),
        ("app==web", true),
        ("app=db", false),
        ("app!=db", true),
        ("app!=web", false),
        ("missing!=x", true),
        ("app in (db,web)", true),
        ("app in (db)", false),
        ("app notin (db)", true),
        ("missing notin (db)", true),
        ("app notin (web)", false),
        ("app", true),
        ("missing", false),
        ("!missing", true),
        ("!app", false),
        ("app=web,tier=front", true),
        ("app=web,tier=back", false),
        ("n>5", true),
        ("n>7", false),
        ("n<8", true),
        ("app>1", false),
        ("missing<1", false),
        ("missing=", false),
    ];
    for (sel, want) in cases {
        let s = Selector::parse(sel).unwrap();
        assert_eq!(s.matches(&labels), want, "{sel}");
    }
    assert!(!Selector::nothing().matches(&labels));
    assert!(Selector::everything().matches(&labels));
}

#[test]
fn empty_value_matches_empty_label() {
    let s = Selector::parse("x=").unwrap();
    assert!(s.matches(&set(&[("x", "")])));
    let s = Selector::parse("x in (,a)").unwrap();
    assert!(s.matches(&set(&[("x", "")])));
}

#[test]
fn matches_objects_by_metadata_labels() {
    let s = Selector::parse("app=web").unwrap();
    assert!(s.matches_object(&json!({"metadata": {"labels": {"app": "web"}}})));
    assert!(!s.matches_object(&json!({"metadata": {"name": "x"}})));
    assert!(Selector::parse("!app")
        .unwrap()
        .matches_object(&json!({"metadata": {}})));
    let mut hm = HashMap::new();
    hm.insert("app".to_string(), "web".to_string());
    assert!(s.matches(&hm));
}

#[test]
fn label_selector_objects() {
    let sel = json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "edge"]},
            {"key": "env", "operator": "NotIn", "values": ["prod"]},
            {"key": "team", "operator": "Exists"},
            {"key": "legacy", "operator": "DoesNotExist"}
        ]
    });
    let s = Selector::from_label_selector(Some(&sel)).unwrap();
    assert_eq!(
        s.to_string(),
        "app=web,env notin (prod),!legacy,team,tier in (edge,front)"
    );
    assert!(s.matches(&set(&[("app", "web"), ("tier", "edge"), ("team", "a")])));
    assert!(!s.matches(&set(&[("app", "web"), ("tier", "edge")])));
    assert!(!s.matches(&set(&[
        ("app", "web"),
        ("tier", "edge"),
        ("team", "a"),
        ("legacy", "1")
    ])));
    assert_eq!(
        Selector::from_label_selector(None).unwrap(),
        Selector::Nothing
    );
    assert_eq!(
        Selector::from_label_selector(Some(&Value::Null)).unwrap(),
        Selector::Nothing
    );
    let all = Selector::from_label_selector(Some(&json!({}))).unwrap();
    assert!(all.is_empty());
    assert!(all.matches(&set(&[])));
}

#[test]
fn label_selector_errors() {
    let bad_op = json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]});
    assert_eq!(
        Selector::from_label_selector(Some(&bad_op))
            .unwrap_err()
            .to_string(),
        "\"Gt\" is not a valid label selector operator"
    );
    let no_values = json!({"matchExpressions": [{"key": "a", "operator": "In"}]});
    assert_eq!(
        Selector::from_label_selector(Some(&no_values))
            .unwrap_err()
            .to_string(),
        "values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty"
    );
    let exists_with_values =
        json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]});
    assert_eq!(
        Selector::from_label_selector(Some(&exists_with_values))
            .unwrap_err()
            .to_string(),
        "values: Invalid value: [\"x\"]: values set must be empty for exists and does not exist"
    );
    let bad_key = json!({"matchLabels": {"-a": "b"}});
    let err = Selector::from_label_selector(Some(&bad_key))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("key: Invalid value: \"-a\": name part must"),
        "{err}"
    );
    for malformed in [
        json!("app=web"),
        json!({"matchLabels": []}),
        json!({"matchLabels": {"a": 1}}),
        json!({"matchExpressions": {}}),
        json!({"matchExpressions": [1]}),
        json!({"matchExpressions": [{"key": "a", "operator": "In", "values": [1]}]}),
    ] {
        assert!(
            matches!(
                Selector::from_label_selector(Some(&malformed)),
                Err(Error::Malformed(_))
            ),
            "{malformed}"
        );
    }
}

#[test]
fn from_map_and_exact_match() {
    let s = Selector::from_map([("b", "2"), ("a", "1")]).unwrap();
    assert_eq!(s.to_string(), "a=1,b=2");
    assert_eq!(s.requires_exact_match("a"), Some("1"));
    assert_eq!(s.requires_exact_match("c"), None);
    let s = Selector::parse("a in (x),b in (x,y),c!=z").unwrap();
    assert_eq!(s.requires_exact_match("a"), Some("x"));
    assert_eq!(s.requires_exact_match("b"), None);
    assert_eq!(s.requires_exact_match("c"), None);
    assert!(Selector::from_map([("a b", "1")]).is_err());
}

#[test]
fn requirement_accessors_and_operators() {
    let r = Requirement::new(
        "k",
        Operator::In,
        vec!["b".into(), "a".into()],
        &FieldPath::root(),
    )
    .unwrap();
    assert_eq!(r.key(), "k");
    assert_eq!(r.operator(), Operator::In);
    assert_eq!(r.values(), ["b", "a"]);
    assert_eq!(r.to_string(), "k in (a,b)");
    assert_eq!(Operator::GreaterThan.as_str(), "gt");
    let err = Requirement::new("k", Operator::Equals, vec![], &FieldPath::new("spec"))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "spec.values: Invalid value: null: exact-match compatibility requires one single value"
    );
}

#[test]
fn never_panics_on_odd_input() {
    for input in [
        "(",
        ")",
        "!!",
        "!=",
        "==",
        "=",
        "<",
        ">",
        "x in ((",
        "x notin",
        "é=ü",
        "x in (,,,)",
        ",,",
        "a,b,",
        "\u{0}",
        "x in (a,)",
        "x in (,a)",
    ] {
        let _ = Selector::parse(input);
    }
    assert_eq!(
        Selector::parse("x in (a,)").unwrap().to_string(),
        "x in (,a)"
    );
}
