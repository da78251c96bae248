//! The typed control API answers the same in process and over the admin API: the same views,
//! the same changes, the same refusals.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::collections::BTreeMap;
use std::time::Duration;

use sluice_config::{Document, MapEnv};
use sluice_gateway::GatewayServer;
use sluice_gateway::config::GatewayConfig;
use sluice_gateway::control::{
    AdminClient, ControlError, GatewayControl, SegmentRule, SegmentsChange, ShadowChange,
    UpstreamsChange,
};

const CONFIG: &str = "routes:\n  chat:\n    versions:\n      - {name: stable, url: \"http://127.0.0.1:9/v1\", model: s}\n      - {name: candidate, url: \"http://127.0.0.1:9/v1\", model: c}\n    split:\n      weights: {stable: 100, candidate: 0}\n";

async fn gateway() -> GatewayServer {
    let env = MapEnv::default();
    let document = Document::parse("gateway.yaml", CONFIG, &env).unwrap();
    let config = GatewayConfig::from_document(&document, &env).unwrap();
    let loopback = "127.0.0.1:0".parse().unwrap();
    GatewayServer::start(config, None, None, loopback, loopback)
        .await
        .unwrap()
}

/// Drives one control through every call and returns what it saw.
async fn exercise(control: &dyn GatewayControl) -> Vec<String> {
    let mut seen = Vec::new();
    let weights = BTreeMap::from([("stable".to_owned(), 70.0), ("candidate".to_owned(), 30.0)]);
    control
        .set_weights("chat", &weights, Some("r1"))
        .await
        .unwrap();
    assert_eq!(control.weights("chat").await.unwrap(), weights);
    let shadow = ShadowChange {
        version: "candidate".into(),
        percent: 5.0,
    };
    control.set_shadow("chat", &shadow).await.unwrap();
    let segments = SegmentsChange {
        segments: vec![
            SegmentRule::header("X-Beta", "1"),
            SegmentRule::users(["ann".to_owned()]),
        ],
        sticky_key: Some("user".into()),
    };
    control
        .set_segments("chat", "candidate", &segments)
        .await
        .unwrap();
    let urls = UpstreamsChange {
        urls: vec![
            "http://127.0.0.1:10/v1".into(),
            "http://127.0.0.1:11/v1".into(),
        ],
    };
    control
        .set_upstreams("chat", "stable", &urls)
        .await
        .unwrap();
    let view = control.routes().await.unwrap();
    let route = &view.routes["chat"];
    assert_eq!(route.owner.as_deref(), Some("r1"));
    assert_eq!(route.shadow.as_ref(), Some(&shadow));
    assert_eq!(route.sticky_key.as_deref(), Some("user"));
    assert_eq!(route.versions[0].urls, urls.urls);
    assert_eq!(route.segments.len(), 2);
    assert_eq!(route.segments[0].header.as_deref(), Some("x-beta"));
    assert_eq!(route.segments[1].version.as_deref(), Some("candidate"));
    control.release("chat", "r1").await.unwrap();
    assert_eq!(control.routes().await.unwrap().routes["chat"].owner, None);
    control.windows(60, true).await.unwrap();
    // Refusals are answers, with the gateway's reason.
    let refusals = [
        control.weights("nope").await.map(drop),
        control
            .set_weights("chat", &BTreeMap::from([("stable".into(), 50.0)]), None)
            .await,
        control
            .set_shadow(
                "chat",
                &ShadowChange {
                    version: "ghost".into(),
                    percent: 1.0,
                },
            )
            .await,
        control
            .set_segments(
                "chat",
                "candidate",
                &SegmentsChange {
                    segments: vec![SegmentRule::default()],
                    sticky_key: None,
                },
            )
            .await,
    ];
    for refused in refusals {
        match refused {
            Err(ControlError::Refused(reason)) => seen.push(known_reason(&reason)),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    seen
}

/// Which of the expected reasons a refusal gives (the HTTP client adds the URL and status).
fn known_reason(reason: &str) -> String {
    [
        "no route",
        "sum to 100",
        "no version `ghost`",
        "`segments[0]`",
    ]
    .into_iter()
    .find(|needle| reason.contains(needle))
    .unwrap_or_else(|| panic!("an unexpected reason: {reason}"))
    .to_owned()
}

#[tokio::test]
async fn in_process_and_over_http_the_control_api_agrees() {
    let local = gateway().await;
    let in_process = exercise(&local.handle()).await;
    local.shutdown().await;

    let remote = gateway().await;
    let client = AdminClient::new(
        &format!("http://{}", remote.admin_addr()),
        None,
        Duration::from_secs(2),
    )
    .unwrap();
    let over_http = exercise(&client).await;
    remote.shutdown().await;
    assert_eq!(in_process, over_http);
    assert_eq!(
        in_process,
        [
            "no route",
            "sum to 100",
            "no version `ghost`",
            "`segments[0]`"
        ]
    );
}

#[tokio::test]
async fn an_unreachable_gateway_is_not_a_refusal() {
    let client = AdminClient::new("http://127.0.0.1:9", None, Duration::from_millis(500)).unwrap();
    assert!(matches!(
        client.routes().await,
        Err(ControlError::Unreachable(_))
    ));
}
