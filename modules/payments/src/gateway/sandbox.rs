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
//!
//! Its books are durable (ADR 0021): charges, stored answers, pending webhooks and the outage
//! switch live in PostgreSQL, schema `payments_sandbox`, shared by every replica, so a
//! restart loses nothing: an asynchronous payment decided while every process was down is
//! still decided, told by webhook when one is up again, and seen by reconciliation's lookups.

mod books;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use payments_contract::events::FailureCode;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use self::books::{Books, Charge, Claim, Decision, Status, Stored};
use super::{
    Authorization, AuthorizeRequest, CaptureRequest, GatewayError, GatewayPayment, PaymentGateway, RefundRequest,
    VoidRequest,
};

pub use self::books::SCHEMA as SANDBOX_SCHEMA;

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

/// A request under way with its key; the key is free again when this is dropped, also when
/// the caller gives up on the request midway (a crashed process's key frees itself after a
/// lease).
struct InFlight {
    books: Arc<Books>,
    key: String,
    answered: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.answered {
            return;
        }
        let (books, key) = (self.books.clone(), std::mem::take(&mut self.key));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { books.release(&key).await.ok() });
        }
    }
}

/// The sandbox gateway; clones share their books and webhook target.
#[derive(Debug, Clone)]
pub struct SandboxGateway {
    config: SandboxConfig,
    books: Arc<Books>,
    webhook: Arc<Mutex<Option<WebhookTarget>>>,
    http: reqwest::Client,
}

/// Webhook deliveries: how many attempts before the sandbox gives up on one (about half an
/// hour with the backoff below), and how long one attempt may take.
const WEBHOOK_ATTEMPTS: i32 = 40;
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// The books' storage failing is the gateway failing: a 5xx, retried by the caller.
fn storage(error: &anyhow::Error) -> GatewayError {
    tracing::warn!("sandbox gateway storage failed: {error:#}");
    GatewayError::Unavailable("503 Service Unavailable (sandbox storage)".to_owned())
}

impl SandboxGateway {
    /// A sandbox keeping its books through `pool`, in schema [`SANDBOX_SCHEMA`], which must
    /// exist (its tables are created on first use). Any role owning that schema will do; the
    /// app hands it the payments module's pool.
    pub fn new(pool: PgPool, config: SandboxConfig) -> Self {
        Self {
            config,
            books: Arc::new(Books::new(pool)),
            webhook: Arc::default(),
            http: reqwest::Client::builder().timeout(WEBHOOK_TIMEOUT).build().unwrap_or_default(),
        }
    }

    /// Where asynchronous outcomes are delivered; without a target they are only seen by
    /// lookups (reconciliation). The first target set starts this process's webhook sender,
    /// which delivers every due webhook of the shared books (whichever replica took the
    /// payment), and stops once the gateway is dropped or its pool closes.
    pub fn set_webhook_target(&self, target: WebhookTarget) {
        let first = self.webhook.lock().unwrap_or_else(PoisonError::into_inner).replace(target).is_none();
        if first && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let sender = WebhookSender {
                books: Arc::downgrade(&self.books),
                target: self.webhook.clone(),
                http: self.http.clone(),
            };
            runtime.spawn(sender.run());
        }
    }

    /// While on, every call answers 503 without doing anything (for every replica: the
    /// switch is in the books).
    ///
    /// # Errors
    /// When the books cannot be written.
    #[cfg(feature = "sandbox")]
    pub async fn set_outage(&self, outage: bool) -> anyhow::Result<()> {
        let until = outage.then(|| Utc::now() + chrono::TimeDelta::days(365));
        self.books.set_outage_until(until).await
    }

    /// How many times `idempotency_key` was asked for.
    ///
    /// # Errors
    /// When the books cannot be read.
    pub async fn requests(&self, idempotency_key: &str) -> anyhow::Result<u32> {
        Ok(self.books.counts(idempotency_key).await?.0)
    }

    /// How many times the operation of `idempotency_key` was carried out (money moved).
    ///
    /// # Errors
    /// When the books cannot be read.
    #[cfg(feature = "sandbox")]
    pub async fn executions(&self, idempotency_key: &str) -> anyhow::Result<u32> {
        Ok(self.books.counts(idempotency_key).await?.1)
    }

    /// Everything carried out for a payment: (captured, refunded), in minor units.
    ///
    /// # Errors
    /// When the books cannot be read.
    #[cfg(feature = "sandbox")]
    pub async fn settled(&self, payment_id: Uuid) -> anyhow::Result<Option<(i64, i64)>> {
        Ok(self.books.charge(payment_id).await?.map(|charge| (charge.captured, charge.refunded)))
    }

    /// The common start of every call: latency, outage, concurrent use of the key, request
    /// counting and replay. The call holds the returned guard until it has stored its answer.
    async fn open(&self, key: &str, latency: Duration) -> Result<(Option<Stored>, InFlight), GatewayError> {
        tokio::time::sleep(latency).await;
        match self.books.claim(key).await.map_err(|e| storage(&e))? {
            Claim::Outage => Err(GatewayError::Unavailable("503 Service Unavailable (sandbox outage)".to_owned())),
            Claim::Busy => Err(GatewayError::Unavailable(
                "409 Conflict: a request with this idempotency key is in progress".to_owned(),
            )),
            Claim::Held(stored) => {
                let guard = InFlight { books: self.books.clone(), key: key.to_owned(), answered: false };
                Ok((stored, guard))
            }
        }
    }

    /// Stores the answer of the request holding `guard`'s key.
    async fn store(&self, guard: InFlight, answer: &Stored, executed: bool) -> Result<(), GatewayError> {
        let books = self.books.begin().await.map_err(|e| storage(&e))?;
        self.store_with(books, guard, answer, executed).await
    }

    /// Stores the answer of the request holding `guard`'s key in `books`, the transaction
    /// that carried out its operation, and commits both.
    async fn store_with(
        &self,
        mut books: Transaction<'static, Postgres>,
        mut guard: InFlight,
        answer: &Stored,
        executed: bool,
    ) -> Result<(), GatewayError> {
        self.books.answer(&mut books, &guard.key, answer, executed).await.map_err(|e| storage(&e))?;
        books.commit().await.map_err(|e| storage(&e.into()))?;
        guard.answered = true;
        Ok(())
    }

    /// Frees the key of a request that answered a failure worth retrying (nothing stored).
    async fn abandon(&self, mut guard: InFlight) {
        if self.books.release(&guard.key).await.is_ok() {
            guard.answered = true;
        }
    }

    /// Stores `answer` for the key in `books`, the operation's transaction, and returns it.
    async fn conclude<T>(
        &self,
        books: Transaction<'static, Postgres>,
        guard: InFlight,
        answer: Result<T, GatewayError>,
        stored: Stored,
    ) -> Result<T, GatewayError> {
        let executed = answer.is_ok();
        let stored = match &answer {
            Err(error) => Stored::of_error(error).unwrap_or(stored),
            Ok(_) => stored,
        };
        self.store_with(books, guard, &stored, executed).await?;
        answer
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

    /// The webhook telling the outcome of an asynchronous payment.
    fn webhook_body(payment_id: Uuid, reference: &str, outcome: Status) -> String {
        let (event_type, code) = match outcome {
            Status::Declined(code) => ("payment.failed", Some(code)),
            _ => ("payment.authorized", None),
        };
        serde_json::json!({
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
        .to_string()
    }

    async fn async_authorization(
        &self,
        books: &mut PgConnection,
        request: &AuthorizeRequest,
        reference: String,
        outcome: Status,
        tell: bool,
    ) -> anyhow::Result<Authorization> {
        let at = Utc::now() + chrono::TimeDelta::from_std(self.config.async_delay).unwrap_or_default();
        let charge = self.charge_of(request, &reference, Status::Processing);
        self.books.record_charge(books, &charge, Some(Decision { at, outcome })).await?;
        if tell {
            let body = Self::webhook_body(request.payment_id, &reference, outcome);
            self.books.enqueue_webhook(books, request.payment_id, &body, at).await?;
        }
        Ok(Authorization::Processing { reference })
    }

    fn charge_of(&self, request: &AuthorizeRequest, reference: &str, status: Status) -> Charge {
        Charge {
            payment_id: request.payment_id,
            reference: reference.to_owned(),
            amount: request.amount.amount,
            currency: request.amount.currency.as_str().to_owned(),
            captured: 0,
            refunded: 0,
            status,
        }
    }

    /// The charge as it stands now, asynchronous outcomes that are due decided.
    async fn current(&self, payment_id: Uuid) -> anyhow::Result<Option<Charge>> {
        let mut books = self.books.begin().await?;
        self.books.decide_due(&mut books).await?;
        let charge = self.books.charge_in(&mut books, payment_id).await?;
        books.commit().await?;
        Ok(charge)
    }
}

/// Sends the books' due webhooks from one process. It holds the books weakly: when the
/// gateway is dropped (the app stopped) it stops too.
struct WebhookSender {
    books: std::sync::Weak<Books>,
    target: Arc<Mutex<Option<WebhookTarget>>>,
    http: reqwest::Client,
}

impl WebhookSender {
    /// Delivers due webhooks until the gateway is gone or its pool closes: like a real
    /// gateway, each is retried with backoff until the receiver answers 2xx, across restarts
    /// of any process.
    async fn run(self) {
        // Longest the sender sleeps when nothing is due: what another process queued is sent
        // within this (what this process queues wakes it at once).
        const LONGEST_IDLE: Duration = Duration::from_secs(5);
        const AFTER_ERROR: Duration = Duration::from_millis(200);
        loop {
            let Some(books) = self.books.upgrade() else { return };
            if books.pool().is_closed() {
                return;
            }
            let wait = match books.next_due(WEBHOOK_ATTEMPTS).await {
                Ok(Some(due)) if due <= Utc::now() => match self.send_due(&books).await {
                    Ok(0) | Err(_) => AFTER_ERROR, // an outage, or the receiver failing
                    Ok(_) => Duration::ZERO,
                },
                Ok(Some(due)) => (due - Utc::now()).to_std().unwrap_or_default().min(LONGEST_IDLE),
                Ok(None) => LONGEST_IDLE,
                Err(_) => AFTER_ERROR,
            };
            if !wait.is_zero() {
                // Woken early when this process queues a webhook (a notification sent before
                // the wait began is kept for it).
                tokio::select! {
                    () = books.news.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }

    async fn send_due(&self, books: &Books) -> anyhow::Result<usize> {
        if books.in_outage().await? {
            return Ok(0);
        }
        books.decide_due(&mut *books.pool().acquire().await?).await?;
        let Some(target) = self.target.lock().unwrap_or_else(PoisonError::into_inner).clone() else {
            return Ok(0);
        };
        let due = books.claim_due_webhooks(10, WEBHOOK_TIMEOUT * 2, WEBHOOK_ATTEMPTS).await?;
        for webhook in &due {
            let timestamp = Utc::now().timestamp();
            let sent = self
                .http
                .post(&target.url)
                .header("content-type", "application/json")
                .header(
                    SandboxSignature::HEADER,
                    SandboxSignature::sign(&target.secret, timestamp, webhook.body.as_bytes()),
                )
                .body(webhook.body.clone())
                .send()
                .await;
            let failure = match sent {
                Ok(response) if response.status().is_success() => None,
                Ok(response) => Some(format!("answered {}", response.status())),
                Err(error) => Some(format!("not delivered: {error}")),
            };
            match failure {
                None => books.webhook_delivered(webhook.id).await?,
                Some(error) => {
                    let exponent = u32::try_from(webhook.attempts.clamp(1, 7) - 1).unwrap_or_default();
                    let retry_in = (Duration::from_millis(500) * 2u32.pow(exponent)).min(Duration::from_secs(60));
                    tracing::warn!(attempt = webhook.attempts, %error, "sandbox webhook failed; retrying later");
                    books.webhook_failed(webhook.id, &error, retry_in).await?;
                }
            }
        }
        Ok(due.len())
    }
}

#[async_trait::async_trait]
impl PaymentGateway for SandboxGateway {
    async fn authorize(&self, request: &AuthorizeRequest) -> Result<Authorization, GatewayError> {
        let key = request.idempotency_key.as_str();
        let token = request.payment_method.as_str();
        let latency = if token == "pm_card_slow" { self.config.slow_latency } else { self.config.latency };
        let (stored, guard) = self.open(key, latency).await?;
        if let Some(answer) = stored.as_ref().and_then(Stored::authorization) {
            self.store(guard, stored.as_ref().unwrap_or(&Stored::Done), false).await?;
            return answer;
        }
        let reference = format!("auth_{}", request.payment_id.simple());
        let declined = |code| Status::Declined(code);
        let outcome = match token {
            "pm_card_declined" => Err(declined(FailureCode::CardDeclined)),
            "pm_card_insufficient_funds" => Err(declined(FailureCode::InsufficientFunds)),
            "pm_card_expired" => Err(declined(FailureCode::ExpiredCard)),
            "pm_card_unavailable" => {
                self.abandon(guard).await;
                return Err(GatewayError::Unavailable("503 Service Unavailable".to_owned()));
            }
            "pm_card_error_once" if self.books.fail_first_time(key).await.map_err(|e| storage(&e))? => {
                self.abandon(guard).await;
                return Err(GatewayError::Unavailable("503 Service Unavailable".to_owned()));
            }
            "pm_card_async" | "pm_card_async_declined" | "pm_card_async_silent" => {
                let outcome = if token == "pm_card_async_declined" {
                    declined(FailureCode::CardDeclined)
                } else {
                    Status::Authorized
                };
                let mut books = self.books.begin().await.map_err(|e| storage(&e))?;
                let answer = self
                    .async_authorization(
                        &mut books,
                        request,
                        reference.clone(),
                        outcome,
                        token != "pm_card_async_silent",
                    )
                    .await
                    .map_err(|e| storage(&e))?;
                self.store_with(books, guard, &Stored::Processing { reference }, true).await?;
                // Committed: the webhook sender can see what it is woken for.
                self.books.news.notify_one();
                return Ok(answer);
            }
            "pm_card_visa" | "pm_card_mastercard" | "pm_card_slow" | "pm_card_timeout_once" | "pm_card_error_once" => {
                Ok(())
            }
            _ => Err(declined(FailureCode::InvalidPaymentMethod)),
        };
        // The charge and the answer to the key commit together.
        let mut books = self.books.begin().await.map_err(|e| storage(&e))?;
        if let Err(Status::Declined(code)) = outcome {
            let charge = self.charge_of(request, &reference, Status::Declined(code));
            self.books.record_charge(&mut books, &charge, None).await.map_err(|e| storage(&e))?;
            let error = Self::decline(code);
            self.store_with(books, guard, &Stored::of_error(&error).unwrap_or(Stored::Done), false).await?;
            return Err(error);
        }
        let charge = self.charge_of(request, &reference, Status::Authorized);
        self.books.record_charge(&mut books, &charge, None).await.map_err(|e| storage(&e))?;
        self.store_with(books, guard, &Stored::Approved { reference: reference.clone() }, true).await?;
        if token == "pm_card_timeout_once" && self.requests(key).await.map_err(|e| storage(&e))? == 1 {
            // Done, but the answer is lost on the way: the caller times out.
            tokio::time::sleep(self.config.hang).await;
        }
        Ok(Authorization::Approved { reference })
    }

    async fn capture(&self, request: &CaptureRequest) -> Result<(), GatewayError> {
        let key = request.idempotency_key.as_str();
        let (stored, guard) = self.open(key, self.config.latency).await?;
        if let Some(answer) = stored.as_ref().and_then(Stored::done) {
            self.store(guard, stored.as_ref().unwrap_or(&Stored::Done), false).await?;
            return answer;
        }
        let mut books = self.books.begin().await.map_err(|e| storage(&e))?;
        let answer = async {
            self.books.decide_due(&mut books).await?;
            if self.books.capture(&mut books, request.payment_id, request.amount.amount).await? {
                return Ok(Ok(()));
            }
            Ok(Err(match self.books.charge_in(&mut books, request.payment_id).await? {
                Some(charge) => GatewayError::Refused(format!(
                    "cannot capture {} of an authorization that is {:?}",
                    request.amount.amount, charge.status
                )),
                None => GatewayError::Refused(format!("no such authorization: {}", request.reference)),
            }))
        }
        .await
        .map_err(|e: anyhow::Error| storage(&e))?;
        self.conclude(books, guard, answer, Stored::Done).await
    }

    async fn void(&self, request: &VoidRequest) -> Result<(), GatewayError> {
        let key = request.idempotency_key.as_str();
        let (stored, guard) = self.open(key, self.config.latency).await?;
        if let Some(answer) = stored.as_ref().and_then(Stored::done) {
            self.store(guard, stored.as_ref().unwrap_or(&Stored::Done), false).await?;
            return answer;
        }
        let mut books = self.books.begin().await.map_err(|e| storage(&e))?;
        let answer = async {
            self.books.decide_due(&mut books).await?;
            if self.books.void(&mut books, request.payment_id).await? {
                return Ok(Ok(()));
            }
            Ok(Err(match self.books.charge_in(&mut books, request.payment_id).await? {
                Some(charge) => GatewayError::Refused(format!("cannot void a payment that is {:?}", charge.status)),
                None => GatewayError::Refused(format!("no such authorization: {}", request.reference)),
            }))
        }
        .await
        .map_err(|e: anyhow::Error| storage(&e))?;
        self.conclude(books, guard, answer, Stored::Done).await
    }

    async fn refund(&self, request: &RefundRequest) -> Result<String, GatewayError> {
        let key = request.idempotency_key.as_str();
        let (stored, guard) = self.open(key, self.config.latency).await?;
        if let Some(answer) = stored.as_ref().and_then(Stored::refund) {
            self.store(guard, stored.as_ref().unwrap_or(&Stored::Done), false).await?;
            return answer;
        }
        let refund_reference = format!("re_{}", Uuid::now_v7().simple());
        let mut books = self.books.begin().await.map_err(|e| storage(&e))?;
        let answer = async {
            if self.books.refund(&mut books, request.payment_id, request.amount.amount).await? {
                return Ok(Ok(refund_reference.clone()));
            }
            Ok(Err(match self.books.charge_in(&mut books, request.payment_id).await? {
                Some(charge) => GatewayError::Refused(format!(
                    "cannot refund {} of a payment with {} captured and {} refunded",
                    request.amount.amount, charge.captured, charge.refunded
                )),
                None => GatewayError::Refused(format!("no such payment: {}", request.reference)),
            }))
        }
        .await
        .map_err(|e: anyhow::Error| storage(&e))?;
        self.conclude(books, guard, answer, Stored::Refunded { refund_reference: refund_reference.clone() }).await
    }

    async fn lookup(&self, payment_id: Uuid) -> Result<GatewayPayment, GatewayError> {
        tokio::time::sleep(self.config.latency).await;
        if self.books.in_outage().await.map_err(|e| storage(&e))? {
            return Err(GatewayError::Unavailable("503 Service Unavailable (sandbox outage)".to_owned()));
        }
        let charge = self.current(payment_id).await.map_err(|e| storage(&e))?;
        Ok(match charge {
            None => GatewayPayment::Unknown,
            Some(charge) => {
                let reference = charge.reference;
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

/// When the outage switch of the books behind `pool` ends: `None` when the gateway is up.
/// For operators and the chaos harness, which take the gateway down for a while.
///
/// # Errors
/// When the books cannot be written.
#[cfg(feature = "sandbox")]
pub async fn set_sandbox_outage_until(pool: PgPool, until: Option<chrono::DateTime<Utc>>) -> anyhow::Result<()> {
    Books::new(pool).set_outage_until(until).await
}
