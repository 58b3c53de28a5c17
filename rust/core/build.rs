//! Compiles `src/jpeg/shim.c` against the libjpeg-turbo headers turbojpeg-sys installs.
fn main() {
    let shim = "src/jpeg/shim.c";
    println!("cargo:rerun-if-changed={shim}");
    let include = std::env::var("DEP_TURBOJPEG_INCLUDE").expect("turbojpeg-sys names its include directory");
    let mut build = cc::Build::new();
    for dir in include.split(',') {
        build.include(dir);
    }
    build.file(shim).warnings(true).compile("rawmm_jpeg_shim");
}
