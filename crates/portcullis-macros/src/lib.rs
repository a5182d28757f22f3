//! Derive macros for portcullis.
//!
//! `#[derive(Dto)]` marks a type as allowed to leave the server as an action
//! result. It is a macro (rather than a hand-written `impl`) so that review
//! and the `audit` tool can see at the type definition that it is a DTO.
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use quote::quote;
use syn::{DeriveInput, parse_macro_input};

/// Implements `portcullis::Dto` for a purpose-built response type.
#[proc_macro_derive(Dto)]
pub fn derive_dto(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    quote! {
        impl #impl_generics ::portcullis::Dto for #name #ty_generics #where_clause {}
    }
    .into()
}
