use super::*;
use serde_json::json;

fn ok(doc: Value, patch: Value, want: Value) {
    assert_eq!(apply(&doc, &patch).unwrap(), want, "{doc} + {patch}");
}

fn err(doc: Value, patch: Value) -> String {
    apply(&doc, &patch).unwrap_err().to_string()
}

/// RFC 6902 appendix A, the examples that succeed.
#[test]
fn rfc6902_examples() {
    ok(
        json!({"foo": "bar"}),
        json!([{"op": "add", "path": "/baz", "value": "qux"}]),
        json!({"baz": "qux", "foo": "bar"}),
    );
    ok(
        json!({"foo": ["bar", "baz"]}),
        json!([{"op": "add", "path": "/foo/1", "value": "qux"}]),
        json!({"foo": ["bar", "qux", "baz"]}),
    );
    ok(
        json!({"baz": "qux", "foo": "bar"}),
        json!([{"op": "remove", "path": "/baz"}]),
        json!({"foo": "bar"}),
    );
    ok(
        json!({"foo": ["bar", "qux", "baz"]}),
        json!([{"op": "remove", "path": "/foo/1"}]),
        json!({"foo": ["bar", "baz"]}),
    );
    ok(
        json!({"baz": "qux", "foo": "bar"}),
        json!([{"op": "replace", "path": "/baz", "value": "boo"}]),
        json!({"baz": "boo", "foo": "bar"}),
    );
    ok(
        json!({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}}),
        json!([{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}]),
        json!({"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}),
    );
    ok(
        json!({"foo": ["all", "grass", "cows", "eat"]}),
        json!([{"op": "move", "from": "/foo/1", "path": "/foo/3"}]),
        json!({"foo": ["all", "cows", "eat", "grass"]}),
    );
    ok(
        json!({"baz": "qux", "foo": ["a", 2, "c"]}),
        json!([
            {"op": "test", "path": "/baz", "value": "qux"},
            {"op": "test", "path": "/foo/1", "value": 2}
        ]),
        json!({"baz": "qux", "foo": ["a", 2, "c"]}),
    );
    ok(
        json!({"foo": "bar"}),
        json!([{"op": "add", "path": "/child", "value": {"grandchild": {}}}]),
        json!({"foo": "bar", "child": {"grandchild": {}}}),
    );
    ok(
        json!({"foo": ["bar"]}),
        json!([{"op": "add", "path": "/foo/-", "value": ["abc", "def"]}]),
        json!({"foo": ["bar", ["abc", "def"]]}),
    );
    ok(
        json!({"/": 9, "~1": 10}),
        json!([{"op": "test", "path": "/~01", "value": 10}]),
        json!({"/": 9, "~1": 10}),
    );
    ok(
        json!({"foo": null}),
        json!([{"op": "test", "path": "/foo", "value": null}]),
        json!({"foo": null}),
    );
}

#[test]
fn kubernetes_style_patches() {
    let pod = json!({"metadata": {"name": "p", "labels": {"app.kubernetes.io/name": "x"}},
                     "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}});
    ok(
        pod.clone(),
        json!([
            {"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:2"},
            {"op": "remove", "path": "/metadata/labels/app.kubernetes.io~1name"},
            {"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}},
            {"op": "copy", "from": "/metadata/name", "path": "/metadata/annotations/name"}
        ]),
        json!({"metadata": {"name": "p", "labels": {}, "annotations": {"a": "b", "name": "p"}},
               "spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}),
    );
    ok(pod.clone(), json!([]), pod.clone());
    ok(
        pod,
        json!([{"op": "add", "path": "", "value": {"replaced": true}}]),
        json!({"replaced": true}),
    );
}

/// RFC 6902 appendix A error cases and more.
#[test]
fn errors_are_readable() {
    assert_eq!(
        err(
            json!({"foo": "bar"}),
            json!([{"op": "add", "path": "/baz/bat", "value": "qux"}])
        ),
        "add operation does not apply: doc is missing path: \"/baz/bat\""
    );
    assert_eq!(
        err(
            json!({"baz": "qux"}),
            json!([{"op": "test", "path": "/baz", "value": "bar"}])
        ),
        "testing value \"/baz\" failed: test failed"
    );
    assert_eq!(
        err(
            json!({"foo": ["bar"]}),
            json!([{"op": "add", "path": "/foo/2", "value": 1}])
        ),
        "add operation does not apply: index out of bounds: \"/foo/2\""
    );
    assert_eq!(
        err(json!({}), json!([{"op": "remove", "path": "/x"}])),
        "remove operation does not apply: doc is missing path: \"/x\""
    );
    assert_eq!(
        err(
            json!({}),
            json!([{"op": "replace", "path": "/x", "value": 1}])
        ),
        "replace operation does not apply: doc is missing path: \"/x\""
    );
    assert_eq!(
        err(json!({}), json!({"op": "add"})),
        "invalid JSON patch: a JSON patch must be a list of operations"
    );
    assert_eq!(
        err(json!({}), json!([{"op": "frob", "path": "/x"}])),
        "invalid JSON patch: operation 0: unknown op \"frob\""
    );
    assert_eq!(
        err(json!({}), json!([{"op": "add", "path": "/x"}])),
        "invalid JSON patch: operation 0: missing \"value\""
    );
    assert_eq!(
        err(json!({}), json!([{"path": "/x"}])),
        "invalid JSON patch: operation 0: missing \"op\""
    );
    assert_eq!(
        err(json!({}), json!([{"op": "add", "path": 5, "value": 1}])),
        "invalid JSON patch: operation 0: \"path\" must be a string"
    );
    assert_eq!(
        err(json!({}), json!([1])),
        "invalid JSON patch: operation 0 is not an object"
    );
    assert_eq!(
        err(json!({}), json!([{"op": "add", "path": "x", "value": 1}])),
        "invalid JSON pointer \"x\": must start with '/'"
    );
    assert_eq!(
        err(
            json!({}),
            json!([{"op": "add", "path": "/a~2", "value": 1}])
        ),
        "invalid JSON pointer \"/a~2\": '~' must be followed by '0' or '1'"
    );
    assert!(err(
        json!({"a": {"b": 1}}),
        json!([{"op": "move", "from": "/a", "path": "/a/b/c"}])
    )
    .contains("cannot be moved into one of its children"));
    assert!(err(
        json!({"a": [1]}),
        json!([{"op": "remove", "path": "/a/01"}])
    )
    .contains("missing"));
    assert!(err(json!({"a": [1]}), json!([{"op": "remove", "path": "/a/-"}])).contains("missing"));
    assert!(err(
        json!({"a": 1}),
        json!([{"op": "add", "path": "/a/b", "value": 1}])
    )
    .contains("parent is not a container"));
    assert!(err(json!({}), json!([{"op": "remove", "path": ""}])).contains("whole document"));
    assert!(err(
        json!({}),
        json!([{"op": "copy", "from": "/x", "path": "/y"}])
    )
    .contains("from path"));
    assert!(err(
        json!({}),
        json!([{"op": "move", "from": "/x", "path": "/x"}])
    )
    .contains("from path"));
}

#[test]
fn failed_patches_change_nothing() {
    let doc = json!({"a": 1});
    let patch = json!([
        {"op": "add", "path": "/b", "value": 2},
        {"op": "test", "path": "/a", "value": 2}
    ]);
    assert!(apply(&doc, &patch).is_err());
    assert_eq!(doc, json!({"a": 1}));
}

#[test]
fn test_op_compares_by_value() {
    ok(
        json!({"n": 1, "o": {"a": 1, "b": [1.0]}}),
        json!([
            {"op": "test", "path": "/n", "value": 1.0},
            {"op": "test", "path": "/o", "value": {"b": [1], "a": 1}}
        ]),
        json!({"n": 1, "o": {"a": 1, "b": [1.0]}}),
    );
    assert!(err(
        json!({"o": {"a": 1}}),
        json!([{"op": "test", "path": "/o", "value": {"a": 1, "b": 2}}])
    )
    .contains("test failed"));
    assert!(err(
        json!({}),
        json!([{"op": "test", "path": "/x", "value": null}])
    )
    .contains("test failed"));
}

#[test]
fn move_to_same_path_is_a_no_op() {
    ok(
        json!({"a": 1}),
        json!([{"op": "move", "from": "/a", "path": "/a"}]),
        json!({"a": 1}),
    );
}
