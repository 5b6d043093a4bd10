//! The shape of the static type table and the small constructors its entries
//! are written with.

use super::ListType;

/// The patch strategy of a field as its Go struct tag spells it
/// (`patchStrategy:"merge,retainKeys"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Strategy {
    /// `merge`: merge lists by key (or as sets of primitives).
    pub merge: bool,
    /// `replace`: replace the whole value (used on one struct field).
    pub replace: bool,
    /// `retainKeys`: patches carry a `$retainKeys` list (used when diffing).
    pub retain_keys: bool,
}

pub(crate) const NONE: Strategy = Strategy {
    merge: false,
    replace: false,
    retain_keys: false,
};
pub(crate) const MERGE: Strategy = Strategy {
    merge: true,
    replace: false,
    retain_keys: false,
};
pub(crate) const MERGE_RETAIN: Strategy = Strategy {
    merge: true,
    replace: false,
    retain_keys: true,
};
pub(crate) const RETAIN: Strategy = Strategy {
    merge: false,
    replace: false,
    retain_keys: true,
};
pub(crate) const REPLACE: Strategy = Strategy {
    merge: false,
    replace: true,
    retain_keys: false,
};

pub(crate) const ATOMIC: Option<ListType> = Some(ListType::Atomic);
pub(crate) const SET: Option<ListType> = Some(ListType::Set);

/// `+listType=map` with its `+listMapKey`s.
pub(crate) const fn lt_map(keys: &'static [&'static str]) -> Option<ListType> {
    Some(ListType::Map { keys })
}

/// One Go API type: the fields of it that matter for patching.
#[derive(Debug)]
pub(crate) struct TypeDef {
    /// `package.version.Type`, e.g. `core.v1.PodSpec`.
    pub name: &'static str,
    pub fields: &'static [FieldDef],
}

/// One field of a [`TypeDef`].
#[derive(Debug)]
pub(crate) struct FieldDef {
    /// The JSON name.
    pub name: &'static str,
    /// The struct type of the value (of each element, for lists), when the table
    /// has it; empty otherwise.
    pub ty: &'static str,
    /// True for slices.
    pub list: bool,
    pub strategy: Strategy,
    /// `patchMergeKey`, empty when none.
    pub merge_key: &'static str,
    /// The explicit `+listType` marker.
    pub list_type: Option<ListType>,
}

/// A struct-valued field.
pub(crate) const fn field(name: &'static str, ty: &'static str) -> FieldDef {
    field_with(name, ty, NONE)
}

/// A struct-valued field with a patch strategy.
pub(crate) const fn field_with(
    name: &'static str,
    ty: &'static str,
    strategy: Strategy,
) -> FieldDef {
    FieldDef {
        name,
        ty,
        list: false,
        strategy,
        merge_key: "",
        list_type: None,
    }
}

/// A list field.
pub(crate) const fn list(
    name: &'static str,
    ty: &'static str,
    strategy: Strategy,
    merge_key: &'static str,
    list_type: Option<ListType>,
) -> FieldDef {
    FieldDef {
        name,
        ty,
        list: true,
        strategy,
        merge_key,
        list_type,
    }
}

/// Builds a `&[TypeDef]` from `"name" => [fields...]` entries, keeping the table
/// one line per field.
macro_rules! types {
    ($($name:literal => [$($field:expr),* $(,)?]),* $(,)?) => {
        &[$(TypeDef { name: $name, fields: &[$($field),*] }),*]
    };
}
pub(crate) use types;
