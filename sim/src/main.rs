fn main() {
    eprintln!("buddy-sim: not built yet (issue 4)");
    std::process::exit(2);
}
