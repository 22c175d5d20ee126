//! Integration tests: the real server in-process, a real PostgreSQL database per test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod api;
mod assets;
mod audit;
mod audit_paths;
mod auth;
mod auth_hardening;
mod campaigns;
mod cli;
mod consent;
mod contacts;
mod csrf;
mod disclosure;
mod entities;
mod fault;
mod harness;
mod headers;
mod import;
mod jobs;
mod keys;
mod mail;
mod mailbox;
mod message_data;
mod messages;
mod metrics;
mod openapi;
mod pages;
mod phi_leak;
mod role_matrix;
mod segments;
mod sending_domains;
mod sequences;
mod smtp;
mod templates;
mod users;
mod webhooks;
