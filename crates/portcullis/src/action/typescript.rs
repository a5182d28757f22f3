//! The typed TypeScript client's Rust half (feature `ts`): an action
//! registered with [`ActionBuilder::typescript`] carries its input and
//! output types as TypeScript in the manifest ([`ClientTypes`]), and
//! `portcullis ts` turns the manifest into `actions.d.ts` + `actions.js`.
//!
//! Why through the manifest: the CLI already reads it from any app
//! (`--cmd "… manifest --json"`) without compiling the app into the tool;
//! the declarations are plain strings there, so the CLI needs neither the
//! app's types nor ts-rs, and an app that does not ask for TypeScript pays
//! nothing (the feature is off by default).
//!
//! Why [ts-rs](https://docs.rs/ts-rs): it reads serde's `rename`/`rename_all`,
//! so the TypeScript field names are the wire names the decoder accepts
//! and the DTO serializes; derive it next to `Deserialize`/`Serialize`
//! (`#[derive(Deserialize, garde::Validate, TS)]`). Large integers
//! (`i64`, `u64`) are `number` here, not ts-rs's default `bigint`: serde_json
//! writes them as JSON numbers and `JSON.parse` reads numbers (exact up to
//! 2^53, which record ids do not reach).
//!
//! State: none. The declarations are computed once, when the action is
//! built, and live in its [`crate::action::ActionMeta`].

use std::any::TypeId;
use std::collections::HashSet;

use super::{ActionBuilder, ClientTypes, TsDeclaration, client_key};

/// The ts-rs crate, at the version portcullis's bounds name
/// (`#[derive(TS)]` expands to `::ts_rs::…`, so an app also depends on
/// `ts-rs` itself, at this version, or writes
/// `#[ts(crate = "portcullis::action::typescript::ts_rs")]`).
pub use ts_rs;
/// The trait an action's input and output implement for
/// [`ActionBuilder::typescript`].
pub use ts_rs::TS;

impl<P, In, Out> ActionBuilder<P, In, Out>
where
    In: TS + 'static,
    Out: TS + 'static,
{
    /// Puts the action's input and output types, as TypeScript, into the
    /// manifest, so `portcullis ts` generates a typed client entry for it
    /// (`call(actions.projectsRename, { projectId, name })`). Both types
    /// derive [`TS`]; the action's field-error shape is derived from the
    /// input's fields on the TypeScript side.
    pub fn typescript(mut self) -> Self {
        self.spec.typescript = Some(client_types::<In, Out>(self.spec.name));
        self
    }
}

/// `In` and `Out` as TypeScript, with every named type they reach.
pub(crate) fn client_types<In: TS + 'static, Out: TS + 'static>(name: &str) -> ClientTypes {
    let cfg = ts_rs::Config::new().with_large_int("number");
    let mut collect = Collect {
        cfg: &cfg,
        seen: HashSet::new(),
        out: Vec::new(),
    };
    ts_rs::TypeVisitor::visit::<In>(&mut collect);
    ts_rs::TypeVisitor::visit::<Out>(&mut collect);
    ClientTypes {
        key: client_key(name),
        input: In::name(&cfg),
        output: Out::name(&cfg),
        declarations: collect.out,
    }
}

/// Walks a type's named dependencies, dependencies first. Types without a
/// declaration of their own (primitives, `Vec`, `Option`) are inlined by
/// ts-rs and only their parameters are walked.
struct Collect<'a> {
    cfg: &'a ts_rs::Config,
    seen: HashSet<TypeId>,
    out: Vec<TsDeclaration>,
}

impl ts_rs::TypeVisitor for Collect<'_> {
    fn visit<T: TS + 'static + ?Sized>(&mut self) {
        if !self.seen.insert(TypeId::of::<T>()) {
            return;
        }
        T::visit_dependencies(self);
        T::visit_generics(self);
        if T::output_path().is_none() {
            return;
        }
        let declaration = T::decl(self.cfg);
        let name = T::ident(self.cfg);
        if !self.out.iter().any(|d| d.declaration == declaration) {
            self.out.push(TsDeclaration { name, declaration });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Serialize, TS)]
    #[allow(dead_code)]
    #[serde(rename_all = "camelCase")]
    struct Rename {
        project_id: i64,
        name: String,
    }

    #[derive(serde::Serialize, TS)]
    #[allow(dead_code)]
    #[serde(rename_all = "camelCase")]
    struct ProjectDto {
        id: i64,
        name: String,
        owner: Owner,
        tags: Vec<String>,
    }

    #[derive(serde::Serialize, TS)]
    #[allow(dead_code)]
    struct Owner {
        name: Option<String>,
    }

    #[test]
    fn names_follow_serde_and_dependencies_come_first() {
        let t = client_types::<Rename, ProjectDto>("projects.rename");
        assert_eq!(t.key, client_key("projects.rename"));
        assert_eq!(t.input, "Rename");
        assert_eq!(t.output, "ProjectDto");
        let names: Vec<&str> = t.declarations.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["Rename", "Owner", "ProjectDto"]);
        assert_eq!(
            t.declarations[0].declaration,
            "type Rename = { projectId: number, name: string, };"
        );
    }

    #[test]
    fn a_unit_result_is_null() {
        let t = client_types::<Owner, ()>("x.delete");
        assert_eq!(t.output, "null");
        assert_eq!(t.declarations.len(), 1);
    }
}
