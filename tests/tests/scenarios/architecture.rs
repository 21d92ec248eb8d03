//! The dependency rule (DESIGN §1), read from `cargo metadata`: a module may depend on
//! `platform` and on other modules' `-contract` packages, never on another module's
//! implementation; contract packages depend on the shared kernel, serde and friends only, so
//! any process can compile them in; only `app` (package `bulkhead`) and the test package know
//! every implementation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

const MODULES: [&str; 5] = ["users", "orders", "payments", "inventory", "notifications"];

/// What a contract may be built from besides the shared kernel: data types and their
/// schemas, nothing that runs.
const LIGHT_CRATES: [&str; 7] = ["serde", "serde_json", "chrono", "uuid", "thiserror", "async-trait", "utoipa"];

struct Workspace {
    /// Package name → names of the workspace packages it depends on (normal dependencies).
    dependencies: BTreeMap<String, BTreeSet<String>>,
    /// Package name → every crate it always depends on (normal, not optional).
    required: BTreeMap<String, BTreeSet<String>>,
    /// Package name → manifest directory relative to the workspace root.
    directories: BTreeMap<String, String>,
}

fn workspace() -> Workspace {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata: Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let names: BTreeSet<String> = packages.iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect();
    let mut dependencies = BTreeMap::new();
    let mut required = BTreeMap::new();
    let mut directories = BTreeMap::new();
    for package in packages {
        let name = package["name"].as_str().unwrap().to_owned();
        let always: BTreeSet<String> = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null() && d["optional"] == false)
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .collect();
        required.insert(name.clone(), always);
        let internal: BTreeSet<String> = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().unwrap().to_owned())
            .filter(|d| names.contains(d))
            .collect();
        let manifest = Path::new(package["manifest_path"].as_str().unwrap());
        let directory = manifest.parent().unwrap().strip_prefix(root).unwrap().display().to_string();
        dependencies.insert(name.clone(), internal);
        directories.insert(name, directory);
    }
    Workspace { dependencies, required, directories }
}

#[test]
fn modules_depend_only_on_platform_and_other_modules_contracts() {
    let workspace = workspace();
    let mut violations = Vec::new();
    for module in MODULES {
        let Some(dependencies) = workspace.dependencies.get(module) else { continue };
        for dependency in dependencies {
            let allowed = dependency == "platform"
                || dependency.strip_suffix("-contract").is_some_and(|owner| MODULES.contains(&owner));
            if !allowed {
                violations.push(format!("{module} depends on {dependency}"));
            }
        }
    }
    assert!(violations.is_empty(), "module boundaries broken: {violations:?}");
}

#[test]
fn contracts_depend_on_the_shared_kernel_serde_and_friends_only() {
    let workspace = workspace();
    let mut violations = Vec::new();
    for module in MODULES {
        let contract = format!("{module}-contract");
        let Some(always) = workspace.required.get(&contract) else { continue };
        violations.extend(
            always
                .iter()
                .filter(|d| *d != "shared-kernel" && !LIGHT_CRATES.contains(&d.as_str()))
                .map(|d| format!("{contract} depends on {d}")),
        );
    }
    assert!(violations.is_empty(), "contracts must stay light: {violations:?}");
}

#[test]
fn the_shared_kernel_is_light_and_knows_no_other_package() {
    let workspace = workspace();
    let internal = &workspace.dependencies["shared-kernel"];
    assert!(internal.is_empty(), "the shared kernel depends on {internal:?}");
    let heavy: Vec<&String> = workspace.required["shared-kernel"]
        .iter()
        .filter(|d| !LIGHT_CRATES.contains(&d.as_str()) && *d != "rand")
        .collect();
    assert!(heavy.is_empty(), "the shared kernel must stay light: {heavy:?}");
}

#[test]
fn platform_knows_no_module() {
    let workspace = workspace();
    let dependencies: Vec<&String> =
        workspace.dependencies["platform"].iter().filter(|d| *d != "shared-kernel").collect();
    assert!(dependencies.is_empty(), "platform depends on {dependencies:?}");
}

#[test]
fn only_the_app_and_the_tests_know_module_implementations() {
    let workspace = workspace();
    let mut violations = Vec::new();
    for (package, dependencies) in &workspace.dependencies {
        if package == "bulkhead" || package == "bulkhead-tests" || package == "bench" {
            continue;
        }
        for dependency in dependencies.iter().filter(|d| MODULES.contains(&d.as_str())) {
            if !MODULES.contains(&package.as_str()) {
                violations.push(format!("{package} depends on the {dependency} implementation"));
            }
        }
    }
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn packages_live_where_the_layout_says() {
    let workspace = workspace();
    for (package, directory) in &workspace.directories {
        let expected = match package.as_str() {
            "bulkhead" => "app".to_owned(),
            "bulkhead-tests" => "tests".to_owned(),
            "platform" | "bench" | "shared-kernel" => package.clone(),
            module if MODULES.contains(&module) => format!("modules/{module}"),
            contract => match contract.strip_suffix("-contract") {
                Some(owner) if MODULES.contains(&owner) => format!("modules/{owner}/contract"),
                _ => panic!("package {contract} in {directory} is not part of the layout in DESIGN §1"),
            },
        };
        assert_eq!(directory, &expected, "{package}");
    }
}

/// Every compiled module's manifest, by name.
fn manifests() -> BTreeMap<&'static str, platform::Manifest> {
    bulkhead::modules::compiled().iter().map(|d| (d.schema.name, (d.manifest)())).collect()
}

#[test]
fn a_port_admits_exactly_the_modules_whose_manifests_declare_it() {
    let manifests = manifests();
    let mut violations = Vec::new();
    for (module, manifest) in &manifests {
        for port in &manifest.ports_used {
            let served = manifests.values().flat_map(|m| &m.ports_served).find(|served| served.port == *port);
            match served {
                None => violations.push(format!("{module} uses {port}, which no module serves")),
                Some(served) if !served.callers.contains(module) => {
                    violations.push(format!("{module} uses {port}, whose contract does not list it as a caller"));
                }
                Some(_) => {}
            }
        }
        for served in &manifest.ports_served {
            for caller in served.callers {
                let declares = manifests.get(caller).is_some_and(|m| m.ports_used.contains(&served.port));
                if !declares {
                    violations.push(format!("{} admits {caller}, whose manifest does not declare it", served.port));
                }
            }
        }
    }
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn synchronous_calls_between_modules_form_no_cycle() {
    let manifests = manifests();
    let server_of = |port: &str| {
        manifests.iter().find(|(_, m)| m.ports_served.iter().any(|s| s.port == port)).map(|(name, _)| *name)
    };
    let calls: BTreeMap<&str, Vec<&str>> = manifests
        .iter()
        .map(|(module, manifest)| (*module, manifest.ports_used.iter().filter_map(|p| server_of(p)).collect()))
        .collect();
    // Depth-first search: a module met again on the current path closes a cycle.
    fn visit<'a>(module: &'a str, calls: &BTreeMap<&'a str, Vec<&'a str>>, path: &mut Vec<&'a str>) {
        assert!(!path.contains(&module), "synchronous calls go round in a circle: {path:?} → {module}");
        path.push(module);
        for callee in calls.get(module).into_iter().flatten() {
            visit(callee, calls, path);
        }
        path.pop();
    }
    for module in calls.keys() {
        visit(module, &calls, &mut Vec::new());
    }
}

#[test]
fn the_edge_routes_to_every_module_whatever_is_compiled_in() {
    let routed: BTreeSet<&str> = bulkhead::edge::PUBLIC_ROUTES.iter().map(|(module, _)| *module).collect();
    let all: BTreeSet<&str> = bulkhead::modules::ALL.into_iter().collect();
    let compiled: BTreeSet<&str> = bulkhead::modules::compiled().iter().map(|d| d.schema.name).collect();
    assert_eq!(routed, all);
    assert!(compiled.is_subset(&all), "{compiled:?} beyond {all:?}");
    assert_eq!(all, MODULES.into_iter().collect());
}
