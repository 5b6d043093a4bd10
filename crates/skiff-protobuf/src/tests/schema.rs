//! The compiled-in schema against the struct-tag table and the resource table.

use prost_reflect::Kind;

use crate::go_tags::GO_TAGS;
use crate::schema::{self, Tag};

#[test]
fn every_go_tag_names_a_real_field_of_a_fitting_kind() {
    let s = schema::get().expect("schema loads");
    let mut previous = "";
    for (message, _) in GO_TAGS {
        assert!(
            *message > previous,
            "GO_TAGS not sorted or duplicated at {message}"
        );
        previous = message;
    }
    let mut count = 0;
    for (message, field) in s.tagged_fields() {
        count += 1;
        let desc = s
            .pool()
            .get_message_by_name(message)
            .unwrap_or_else(|| panic!("no message {message}"));
        let f = desc
            .get_field_by_name(field)
            .unwrap_or_else(|| panic!("no field {message}.{field}"));
        let singular = !f.is_list() && !f.is_map();
        let is_message = matches!(f.kind(), Kind::Message(_));
        let fits = match s.tag(message, field) {
            Tag::Pointer | Tag::Required => singular && !is_message,
            Tag::Value | Tag::Inline => singular && is_message,
            Tag::NoOmit => true,
            Tag::Default => false,
        };
        assert!(
            fits,
            "{message}.{field} has a tag that does not fit its kind"
        );
    }
    assert!(count > 700, "only {count} tagged fields");
}

#[test]
fn renamed_fields_exist() {
    let s = schema::get().expect("schema loads");
    for (message, field, json) in [
        (
            "k8s.io.api.authentication.v1.BoundObjectReference",
            "uID",
            "uid",
        ),
        (
            "k8s.io.api.networking.v1.IngressClassParametersReference",
            "aPIGroup",
            "apiGroup",
        ),
    ] {
        let desc = s.pool().get_message_by_name(message).expect("message");
        assert!(desc.get_field_by_name(field).is_some(), "{message}.{field}");
        assert_eq!(schema::json_name(message, field), json);
    }
}

#[test]
fn every_served_resource_and_subresource_kind_has_a_schema() {
    let s = schema::get().expect("schema loads");
    // Upstream serves these option kinds as query parameters, never bodies.
    let query_only = [
        "PodAttachOptions",
        "PodExecOptions",
        "PodLogOptions",
        "PodPortForwardOptions",
        "PodProxyOptions",
        "NodeProxyOptions",
        "ServiceProxyOptions",
    ];
    let mut missing = Vec::new();
    for r in skiff_api::resources::RESOURCES {
        let api_version = r.api_version();
        if let Err(e) = s.message_for(&api_version, r.kind) {
            missing.push(e.to_string());
        }
        if let Err(e) = s.message_for(&api_version, r.list_kind) {
            missing.push(e.to_string());
        }
        for sub in r.subresources {
            let sub_version = match sub.kind_group_version {
                Some(("", v)) => v.to_owned(),
                Some((g, v)) => format!("{g}/{v}"),
                None => api_version.clone(),
            };
            if query_only.contains(&sub.kind) {
                continue;
            }
            if let Err(e) = s.message_for(&sub_version, sub.kind) {
                missing.push(e.to_string());
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}
