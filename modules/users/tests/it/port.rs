//! The users port, one set of cases run twice: against the service in process (how
//! notifications calls it in the monolith) and against the contract's HTTP client talking to
//! the module's internal API (how notifications calls it from another process). Both must
//! answer alike, refusals included.

use std::sync::Arc;

use platform::port::CallContext;
use users_contract::{AccountStatus, ActionPurpose, ActionRequestId, UserId, UsersApi, UsersError};

use crate::support::{ADMIN_EMAIL, Harness};

/// The port as notifications sees it in each topology.
enum Reached {
    InProcess,
    OverHttp,
}

fn port(app: &Harness, reached: &Reached) -> Arc<dyn UsersApi> {
    match reached {
        Reached::InProcess => app.api.clone(),
        Reached::OverHttp => app.port_over_http(),
    }
}

async fn gives_contacts_and_names_unknown_users(reached: Reached) {
    let app = Harness::start().await;
    let port = port(&app, &reached);
    let ctx = CallContext::system("test");
    let id = app.register("reach@example.com").await;
    let contact = port.contact(&ctx, UserId(id.parse().unwrap())).await.unwrap();
    assert_eq!((contact.email.as_str(), contact.status), ("reach@example.com", AccountStatus::Active));
    assert!(!contact.email_verified);

    let nobody = UserId(uuid::Uuid::now_v7());
    let error = port.contact(&ctx, nobody).await.unwrap_err();
    assert!(matches!(error, UsersError::UserNotFound(id) if id == nobody), "{error:?}");

    let admins = port.admins(&ctx).await.unwrap();
    assert_eq!(admins.iter().map(|a| a.email.as_str()).collect::<Vec<_>>(), [ADMIN_EMAIL]);
}

async fn mints_a_requests_link_and_refuses_one_it_cannot_issue(reached: Reached) {
    let app = Harness::start().await;
    let port = port(&app, &reached);
    let ctx = CallContext::system("test");
    app.register("link@example.com").await;
    let registered = app.events("users.user_registered").await;
    let request = ActionRequestId(registered[0]["verification_request"].as_str().unwrap().parse().unwrap());
    let link = port.action_link(&ctx, request).await.unwrap();
    assert_eq!(link.purpose, ActionPurpose::VerifyEmail);
    assert!(link.url.ends_with(&link.token), "{}", link.url);

    let unknown = ActionRequestId(uuid::Uuid::now_v7());
    let error = port.action_link(&ctx, unknown).await.unwrap_err();
    assert!(matches!(error, UsersError::LinkUnavailable(id) if id == unknown), "{error:?}");
}

#[tokio::test]
async fn in_process_the_port_gives_contacts_and_names_unknown_users() {
    gives_contacts_and_names_unknown_users(Reached::InProcess).await;
}

#[tokio::test]
async fn over_http_the_port_gives_contacts_and_names_unknown_users() {
    gives_contacts_and_names_unknown_users(Reached::OverHttp).await;
}

#[tokio::test]
async fn in_process_the_port_mints_a_requests_link_and_refuses_one_it_cannot_issue() {
    mints_a_requests_link_and_refuses_one_it_cannot_issue(Reached::InProcess).await;
}

#[tokio::test]
async fn over_http_the_port_mints_a_requests_link_and_refuses_one_it_cannot_issue() {
    mints_a_requests_link_and_refuses_one_it_cannot_issue(Reached::OverHttp).await;
}
