//! Work spread over the machine's cores with results in input order, so
//! what a fit produces never depends on how many cores ran it.

/// The cores to use (2 when the platform cannot say).
pub fn count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// `f` of every item, [`count`] items at a time on scoped threads, in the
/// items' order.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let f = &f;
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(count()) {
        std::thread::scope(|scope| {
            let handles: Vec<_> = chunk.iter().map(|x| scope.spawn(move || f(x))).collect();
            out.extend(handles.into_iter().map(|h| h.join().expect("worker thread")));
        });
    }
    out
}
