//! The built-in sandbox gateway: behaves like a card processor's test mode, in process.
//! The payment method token picks the behaviour (docs/payments.md, "Sandbox tokens"):
//!
//! | token | behaviour |
//! |---|---|
//! | `pm_card_visa`, `pm_card_mastercard` | approved |
//! | `pm_card_declined` | declined, `card_declined` |
//! | `pm_card_insufficient_funds` | declined, `insufficient_funds` |
//! | `pm_card_expired` | declined, `expired_card` |
//! | `pm_card_slow` | approved after `slow_latency` |
//! | `pm_card_timeout_once` | the first authorization is made but its answer never comes (the caller times out); a retry with the same key gets it |
//! | `pm_card_error_once` | the first authorization answers 503, the next is approved |
//! | `pm_card_unavailable` | every authorization answers 503 |
//! | `pm_card_async` | answers "processing"; approved by webhook after `async_delay` |
//! | `pm_card_async_declined` | answers "processing"; declined by webhook after `async_delay` |
//! | `pm_card_async_silent` | answers "processing"; approved after `async_delay` but never calls back (only a lookup tells) |
//! | anything else | declined, `invalid_payment_method` |
//!
//! Each operation is idempotent by key: the same key answers the stored outcome without
//! moving money again. The sandbox counts the requests and the executions of every key, so
//! tests can prove nothing was charged twice. [`SandboxGateway::set_outage`] makes every call
//! answer 503 (circuit breaker tests and demos).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::Utc;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use payments_contract::events::FailureCode;
use platform::money::Money;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

use super::{
    Authorization, AuthorizeRequest, CaptureRequest, GatewayError, GatewayPayment, PaymentGateway, RefundRequest,
    VoidRequest,
};

/// How the sandbox behaves; [`SandboxConfig::default`] gives the documented values.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Added to every call (50 ms), as a network and processor would.
    pub latency: Duration,
    /// What `pm_card_slow` takes (2 s; under the module's 10 s gateway timeout).
    pub slow_latency: Duration,
    /// How long `pm_card_timeout_once` keeps its first answer (1 hour: past any timeout).
    pub hang: Duration,
    /// When asynchronous outcomes (`pm_card_async…`) are decided (3 s).
    pub async_delay: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(50),
            slow_latency: Duration::from_secs(2),
            hang: Duration::from_secs(3600),
            async_delay: Duration::from_secs(3),
        }
    }
}

/// Where the sandbox sends its webhooks and the secret it signs them with.
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    /// E.g. `http://127.0.0.1:8080/api/v1/payments/webhooks/sandbox`.
    pub url: String,
    pub secret: SecretString,
}

/// The sandbox's webhook signature: header `Sandbox-Signature: t=<unix seconds>,v1=<hex>`,
/// where the hex is HMAC-SHA256 with the shared secret over `<t>.<raw body>`.
#[derive(Debug, Clone, Copy)]
pub struct SandboxSignature;

/// Why a webhook's signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing or malformed")]
    Malformed,
    #[error("the signature does not match")]
    Mismatch,
    #[error("the timestamp is outside the tolerance")]
    Stale,
}

impl SandboxSignature {
    pub const HEADER: &'static str = "sandbox-signature";

    /// The header value for `body` sent at `timestamp` (Unix seconds).
    pub fn sign(secret: &SecretString, timestamp: i64, body: &[u8]) -> String {
        let mac = Self::mac(secret, timestamp, body);
        format!("t={timestamp},v1={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Checks `header` against `body`: a matching `v1` (compared in constant time) and a
    /// timestamp within `tolerance` of `now` (Unix seconds), either side.
    ///
    /// # Errors
    /// Why it was refused.
    pub fn verify(
        secret: &SecretString,
        header: &str,
        body: &[u8],
        now: i64,
        tolerance: Duration,
    ) -> Result<(), SignatureError> {
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            match part.trim().split_once('=') {
                Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
                Some(("v1", value)) => signatures.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?),
                _ => {}
            }
        }
        let Some(timestamp) = timestamp else { return Err(SignatureError::Malformed) };
        if signatures.is_empty() {
            return Err(SignatureError::Malformed);
        }
        let matches =
            signatures.iter().any(|signature| Self::mac(secret, timestamp, body).verify_slice(signature).is_ok());
        if !matches {
            return Err(SignatureError::Mismatch);
        }
        let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
        if now.abs_diff(timestamp) > tolerance.unsigned_abs() {
            return Err(SignatureError::Stale);
        }
        Ok(())
    }

    fn mac(secret: &SecretString, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so the fallback (a zero key, whose signatures match
        // nothing we send) is never used.
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose_secret().as_bytes())
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Processing,
    Authorized,
    Captured,
    Voided,
    Declined(FailureCode),
}

#[derive(Debug, Clone)]
struct Charge {
    reference: String,
    amount: Money,
    captured: i64,
    refunded: i64,
    status: Status,
    /// For asynchronous tokens: when and how the outcome is decided.
    decided_at: Option<(chrono::DateTime<Utc>, Status)>,
}

#[derive(Debug, Clone)]
enum Stored {
    Authorization(Result<Authorization, GatewayError>),
    Done(Result<(), GatewayError>),
    Refund(Result<String, GatewayError>),
}

#[derive(Debug, Default)]
struct Books {
    outage: bool,
    charges: HashMap<Uuid, Charge>,
    answers: HashMap<String, Stored>,
    requests: HashMap<String, u32>,
    executions: HashMap<String, u32>,
    failed_once: HashSet<String>,
    /// Keys with a request under way: a second request with one of them is refused, as real
    /// gateways answer 409 to concurrent requests with the same idempotency key.
    in_flight: HashSet<String>,
}

/// A request under way with its key; the key is free again when this is dropped, also when
/// the caller gives up on the request midway.
struct InFlight {
    books: Arc<Mutex<Books>>,
    key: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.books.lock().unwrap_or_else(PoisonError::into_inner).in_flight.remove(&self.key);
    }
}

/// The sandbox gateway; clones share their books.
#[derive(Debug, Clone)]
pub struct SandboxGateway {
    config: SandboxConfig,
    books: Arc<Mutex<Books>>,
    webhook: Arc<Mutex<Option<WebhookTarget>>>,
    http: reqwest::Client,
}

impl SandboxGateway {
    pub fn new(config: SandboxConfig) -> Self {
        Self {
            config,
            books: Arc::default(),
            webhook: Arc::default(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default(),
        }
    }

    /// Where asynchronous outcomes are delivered; without a target they are only seen by
    /// lookups (reconciliation).
    pub fn set_webhook_target(&self, target: WebhookTarget) {
        *self.webhook.lock().unwrap_or_else(PoisonError::into_inner) = Some(target);
    }

    /// While on, every call answers 503 without doing anything.
    pub fn set_outage(&self, outage: bool) {
        self.books().outage = outage;
    }

    /// How many times `idempotency_key` was asked for.
    pub fn requests(&self, idempotency_key: &str) -> u32 {
        self.books().requests.get(idempotency_key).copied().unwrap_or_default()
    }

    /// How many times the operation of `idempotency_key` was carried out (money moved).
    pub fn executions(&self, idempotency_key: &str) -> u32 {
        self.books().executions.get(idempotency_key).copied().unwrap_or_default()
    }

    /// Everything carried out for a payment: (captured, refunded), in minor units.
    pub fn settled(&self, payment_id: Uuid) -> Option<(i64, i64)> {
        self.books().charges.get(&payment_id).map(|charge| (charge.captured, charge.refunded))
    }

    fn books(&self) -> MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The common start of every call: latency, outage, concurrent use of the key, request
    /// counting and replay. The call holds the returned guard until it has stored its answer.
    async fn open(&self, key: &str, latency: Duration) -> Result<(Option<Stored>, InFlight), GatewayError> {
        tokio::time::sleep(latency).await;
        let mut books = self.books();
        if books.outage {
            return Err(GatewayError::Unavailable("503 Service Unavailable (sandbox outage)".to_owned()));
        }
        if !books.in_flight.insert(key.to_owned()) {
            return Err(GatewayError::Unavailable(
                "409 Conflict: a request with this idempotency key is in progress".to_owned(),
            ));
        }
        *books.requests.entry(key.to_owned()).or_default() += 1;
        let guard = InFlight { books: self.books.clone(), key: key.to_owned() };
        Ok((books.answers.get(key).cloned(), guard))
    }

    fn store(&self, key: &str, answer: Stored, executed: bool) {
        let mut books = self.books();
        books.answers.insert(key.to_owned(), answer);
        if executed {
            *books.executions.entry(key.to_owned()).or_default() += 1;
        }
    }

    fn decline_message(code: FailureCode) -> &'static str {
        match code {
            FailureCode::CardDeclined => "Your card was declined.",
            FailureCode::InsufficientFunds => "Your card has insufficient funds.",
            FailureCode::ExpiredCard => "Your card has expired.",
            FailureCode::InvalidPaymentMethod => "No such payment method.",
            FailureCode::ProcessingError => "An error occurred while processing your card.",
        }
    }

    fn decline(code: FailureCode) -> GatewayError {
        GatewayError::Declined { code, message: Self::decline_message(code).to_owned() }
    }

    /// Decides the asynchronous outcomes that are due.
    fn decide_due(books: &mut Books) {
        let now = Utc::now();
        for charge in books.charges.values_mut() {
            if let Some((at, outcome)) = charge.decided_at
                && at <= now
                && charge.status == Status::Processing
            {
                charge.status = outcome;
            }
        }
    }

    fn send_webhook_later(&self, payment_id: Uuid, reference: String, outcome: Status) {
        let Some(target) = self.webhook.lock().unwrap_or_else(PoisonError::into_inner).clone() else {
            return;
        };
        let (delay, http, books) = (self.config.async_delay, self.http.clone(), self.books.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            Self::decide_due(&mut books.lock().unwrap_or_else(PoisonError::into_inner));
            let (event_type, code) = match outcome {
                Status::Declined(code) => ("payment.failed", Some(code)),
                _ => ("payment.authorized", None),
            };
            let body = serde_json::json!({
                "id": format!("evt_{}", Uuid::now_v7().simple()),
                "type": event_type,
                "created": Utc::now().timestamp(),
                "data": {
                    "payment_id": payment_id,
                    "reference": reference,
                    "code": code,
                    "message": code.map(Self::decline_message),
                },
            })
            .to_string();
            // Like a real gateway: a few attempts with backoff until the receiver says 2xx.
            for attempt in 0..5u32 {
                let timestamp = Utc::now().timestamp();
                let sent = http
                    .post(&target.url)
                    .header("content-type", "application/json")
                    .header(
                        SandboxSignature::HEADER,
                        SandboxSignature::sign(&target.secret, timestamp, body.as_bytes()),
                    )
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => return,
                    Ok(response) => tracing::warn!(status = %response.status(), attempt, "sandbox webhook refused"),
                    Err(error) => tracing::warn!(%error, attempt, "sandbox webhook not delivered"),
                }
                tokio::time::sleep(Duration::from_millis(500) * 2u32.pow(attempt)).await;
            }
        });
    }
}

#[async_trait::async_trait]
impl PaymentGateway for SandboxGateway {
    async fn authorize(&self, request: &AuthorizeRequest) -> Result<Authorization, GatewayError> {
        let key = request.idempotency_key.as_str();
        let token = request.payment_method.as_str();
        let latency = if token == "pm_card_slow" { self.config.slow_latency } else { self.config.latency };
        let (stored, _in_flight) = self.open(key, latency).await?;
        if let Some(Stored::Authorization(answer)) = stored {
            return answer;
        }
        let reference = format!("auth_{}", request.payment_id.simple());
        let charge = |status| Charge {
            reference: reference.clone(),
            amount: request.amount,
            captured: 0,
            refunded: 0,
            status,
            decided_at: None,
        };
        let declined = |code| {
            let answer = Err(Self::decline(code));
            self.books().charges.insert(request.payment_id, charge(Status::Declined(code)));
            self.store(key, Stored::Authorization(answer.clone()), false);
            answer
        };
        match token {
            "pm_card_declined" => return declined(FailureCode::CardDeclined),
            "pm_card_insufficient_funds" => return declined(FailureCode::InsufficientFunds),
            "pm_card_expired" => return declined(FailureCode::ExpiredCard),
            "pm_card_unavailable" => return Err(GatewayError::Unavailable("503 Service Unavailable".to_owned())),
            "pm_card_error_once" if self.books().failed_once.insert(key.to_owned()) => {
                return Err(GatewayError::Unavailable("503 Service Unavailable".to_owned()));
            }
            "pm_card_async" | "pm_card_async_declined" | "pm_card_async_silent" => {
                let outcome = if token == "pm_card_async_declined" {
                    Status::Declined(FailureCode::CardDeclined)
                } else {
                    Status::Authorized
                };
                let decided_at = Utc::now() + chrono::TimeDelta::from_std(self.config.async_delay).unwrap_or_default();
                let mut pending = charge(Status::Processing);
                pending.decided_at = Some((decided_at, outcome));
                self.books().charges.insert(request.payment_id, pending);
                let answer = Ok(Authorization::Processing { reference: reference.clone() });
                self.store(key, Stored::Authorization(answer.clone()), true);
                if token != "pm_card_async_silent" {
                    self.send_webhook_later(request.payment_id, reference, outcome);
                }
                return answer;
            }
            "pm_card_visa" | "pm_card_mastercard" | "pm_card_slow" | "pm_card_timeout_once" | "pm_card_error_once" => {}
            _ => return declined(FailureCode::InvalidPaymentMethod),
        }
        self.books().charges.insert(request.payment_id, charge(Status::Authorized));
        let answer = Ok(Authorization::Approved { reference });
        self.store(key, Stored::Authorization(answer.clone()), true);
        if token == "pm_card_timeout_once" && self.requests(key) == 1 {
            // Done, but the answer is lost on the way: the caller times out.
            tokio::time::sleep(self.config.hang).await;
        }
        answer
    }

    async fn capture(&self, request: &CaptureRequest) -> Result<(), GatewayError> {
        let key = request.idempotency_key.as_str();
        let (stored, _in_flight) = self.open(key, self.config.latency).await?;
        if let Some(Stored::Done(answer)) = stored {
            return answer;
        }
        let answer = {
            let mut books = self.books();
            Self::decide_due(&mut books);
            match books.charges.get_mut(&request.payment_id) {
                Some(charge)
                    if charge.status == Status::Authorized && request.amount.amount <= charge.amount.amount =>
                {
                    charge.status = Status::Captured;
                    charge.captured = request.amount.amount;
                    Ok(())
                }
                Some(charge) => Err(GatewayError::Refused(format!(
                    "cannot capture {} of an authorization that is {:?}",
                    request.amount.amount, charge.status
                ))),
                None => Err(GatewayError::Refused(format!("no such authorization: {}", request.reference))),
            }
        };
        self.store(key, Stored::Done(answer.clone()), answer.is_ok());
        answer
    }

    async fn void(&self, request: &VoidRequest) -> Result<(), GatewayError> {
        let key = request.idempotency_key.as_str();
        let (stored, _in_flight) = self.open(key, self.config.latency).await?;
        if let Some(Stored::Done(answer)) = stored {
            return answer;
        }
        let answer = {
            let mut books = self.books();
            Self::decide_due(&mut books);
            match books.charges.get_mut(&request.payment_id) {
                Some(charge) if matches!(charge.status, Status::Authorized | Status::Processing) => {
                    charge.status = Status::Voided;
                    charge.decided_at = None;
                    Ok(())
                }
                Some(charge) => {
                    Err(GatewayError::Refused(format!("cannot void a payment that is {:?}", charge.status)))
                }
                None => Err(GatewayError::Refused(format!("no such authorization: {}", request.reference))),
            }
        };
        self.store(key, Stored::Done(answer.clone()), answer.is_ok());
        answer
    }

    async fn refund(&self, request: &RefundRequest) -> Result<String, GatewayError> {
        let key = request.idempotency_key.as_str();
        let (stored, _in_flight) = self.open(key, self.config.latency).await?;
        if let Some(Stored::Refund(answer)) = stored {
            return answer;
        }
        let answer = {
            let mut books = self.books();
            match books.charges.get_mut(&request.payment_id) {
                Some(charge)
                    if charge.status == Status::Captured
                        && charge.refunded + request.amount.amount <= charge.captured =>
                {
                    charge.refunded += request.amount.amount;
                    Ok(format!("re_{}", Uuid::now_v7().simple()))
                }
                Some(charge) => Err(GatewayError::Refused(format!(
                    "cannot refund {} of a payment with {} captured and {} refunded",
                    request.amount.amount, charge.captured, charge.refunded
                ))),
                None => Err(GatewayError::Refused(format!("no such payment: {}", request.reference))),
            }
        };
        self.store(key, Stored::Refund(answer.clone()), answer.is_ok());
        answer
    }

    async fn lookup(&self, payment_id: Uuid) -> Result<GatewayPayment, GatewayError> {
        tokio::time::sleep(self.config.latency).await;
        let mut books = self.books();
        if books.outage {
            return Err(GatewayError::Unavailable("503 Service Unavailable (sandbox outage)".to_owned()));
        }
        Self::decide_due(&mut books);
        Ok(match books.charges.get(&payment_id) {
            None => GatewayPayment::Unknown,
            Some(charge) => {
                let reference = charge.reference.clone();
                match charge.status {
                    Status::Processing => GatewayPayment::Processing { reference },
                    Status::Authorized => GatewayPayment::Authorized { reference },
                    Status::Captured => GatewayPayment::Captured { reference },
                    Status::Voided => GatewayPayment::Voided { reference },
                    Status::Declined(code) => {
                        GatewayPayment::Declined { code, message: Self::decline_message(code).to_owned() }
                    }
                }
            }
        })
    }
}
