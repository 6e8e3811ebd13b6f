//! The Catalog service: an axum HTTP API that lists the shop's products and, for a known
//! customer, asks Discount (gRPC over mutual TLS) what they pay; and the PostgreSQL database the
//! catalog can be kept in (mutual TLS 1.3 too), with the commands that set it up and fill it.
//!
//! # Layout
//! Dependencies go one way: `config` → `app` → `http` → `discount` → `balancer`, `app` →
//! `server`, and `app`, `http` → `data` → `snapshot` → `rendered` → `catalog`; `config` →
//! `command` → `database` → `catalog` (and `balancer`'s error chain), and `data` → `database`;
//! `catalog`, `openapi`, `server` and `metric_descriptions` use none of the others.
//! - [`catalog`]: products and customers: the embedded default data, the data files and the
//!   rules they must obey.
//! - [`database`]: PostgreSQL: `--database-url` (verify-full over TCP, or a Unix socket),
//!   connections over mutual TLS 1.3 with Catalog's reloaded certificate, the embedded
//!   migrations, the read-only serving role, the import of the data files, and the change
//!   notifications' format (see its own layout).
//! - [`rendered`]: a product as served, its JSON rendered once, and the JSON of a page.
//! - [`snapshot`]: [`snapshot::Snapshot`], the catalog at one moment, immutable: what a request
//!   reads, paged by keyset; a changed row makes a new one cheaply.
//! - [`data`]: [`data::Data`], the current snapshot, swapped whole when the source changes,
//!   and the sources: `files` (the embedded data or the data files, re-read when they change)
//!   and `postgres` (the database, followed change by change).
//! - [`discount`]: the client side of Discount: the batch RPC with a fallback to per-product
//!   calls, a deadline, and the reasons a discount can fail.
//!   - `retry`: one RPC over the replicas: what a failure says about its replica, each
//!     attempt's share of the deadline, the retry on another replica.
//!   - `wire`: the messages sent (deadline and request id included) and the answers checked.
//!   - `failure`: [`discount::DiscountFailure`], why a discount could not be applied.
//!   - `coalesce`: the bookkeeping of coalescing (group commit): the bounded queue and the
//!     RPC slots that decide whether a request's RPC goes out now or with others.
//!   - `groups`: coalesced sending: one `ApplyDiscountPrices` RPC for everything queued (a
//!     lone request as a group of one), each request handed its own answer, and the fallback
//!     to one call per group.
//!   - `calls`: one request's products sent on their own: `ApplyDiscountBatch`, or one
//!     `ApplyDiscount` per product against an original-style Discount.
//! - [`balancer`]: client-side balancing across Discount's replicas, one long-lived mTLS
//!   connection each.
//!   - `addr`: [`balancer::DiscountAddr`], the `host[:port]` targets, and the default port.
//!   - `discovery`: the targets, and names resolved into replicas ([`balancer::Resolve`]).
//!   - `connection`: one HTTP/2 mTLS connection per replica, its health check, its renewal.
//!   - `ejection`: a replica in or out of rotation: ejection, back-off, RPCs in flight.
//!   - `pick`: power of two choices, and the one trial at a time when all are out.
//!   - `settings`: [`balancer::ReplicaSettings`] and their defaults.
//!   - `error`: [`balancer::ClientError`], and failed RPCs put into words.
//! - [`http`]: the public router (`/` included), the `X-USER-ID` extractor and the error
//!   responses, and the OpenAPI document ([`http::ApiDoc`]) served at `/openapi.json`,
//!   generated from the code.
//!   - `state`: [`http::AppState`], what every handler shares.
//!   - `context`: request ids, the access log and the HTTP metrics, around every request.
//!   - `shed`: the 503 with `Retry-After` beyond the concurrent-request limit.
//!   - `products`: `/products` and `/products/{id}`, priced for the caller.
//!   - `doc`: the OpenAPI document: the handlers' annotations, plus what every route gets
//!     from the router and its layers.
//!   - `extract`: `X-USER-ID`, the product id, `limit` and `cursor`, read and checked, and
//!     their schemas.
//!   - `response`: JSON bodies and the error responses ([`http::ApiError`]), one shape for
//!     every 4xx and 5xx.
//! - [`openapi`]: the schema types the OpenAPI document describes the bodies with.
//! - [`server`]: the public HTTP server: hyper-util's connection builder in an accept loop,
//!   with a connection limit, header and idle timeouts ([`server::HttpLimits`]).
//!   - `timer`: the header-read timer that tells the wait for a request from the wait
//!     inside one.
//! - [`metric_descriptions`]: the `# HELP` text and unit of every metric Catalog exports,
//!   described once at start.
//! - [`app`]: [`app::Application`], which binds everything to its listener and runs it, and
//!   [`app::Readiness`], what `/readyz` on the operations port (`service_runtime::ops`, which
//!   `main` starts beside it) answers for Catalog.
//! - [`config`]: command-line flags and their environment variables, turned into
//!   [`app::Settings`] before any port is bound.
//! - [`command`]: the subcommands (`probe`, `migrate`, `import`) and what `migrate` and
//!   `import` do.

pub mod app;
pub mod balancer;
pub mod catalog;
pub mod command;
pub mod config;
pub mod data;
pub mod database;
pub mod discount;
pub mod http;
pub mod metric_descriptions;
pub mod openapi;
pub mod rendered;
pub mod server;
pub mod snapshot;
