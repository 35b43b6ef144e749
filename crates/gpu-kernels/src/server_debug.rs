//! Reading one CUDA stream handle out of the `Debug` text of cubecl's CUDA server.
//!
//! cubecl 0.11 keeps each thread's `CUstream` in a pool inside its server and offers no accessor.
//! The server's derived `Debug` output names it:
//!
//! ```text
//! … streams: MultiStream { streams: StreamPool { streams: [None, Some(StreamWrapper { stream:
//! Stream { sys: 0x7f3a…, … }, cursor: …, last_synced: {…} }), …], factory: …, max_streams: 4 }, …
//! ```
//!
//! A thread's stream sits in slot `StreamId % max_streams` (slots past `max_streams` are
//! cubecl's special streams). This module only parses that text; `cuda::stream` trusts a handle
//! read this way only after checking on the device that it is the thread's stream, so a change of
//! the format costs speed (the host-synchronized path), never correctness.

/// The `sys` handle of the stream in the pool slot of stream id `stream_value`, if the text has
/// the expected shape and the slot holds a stream.
pub fn stream_handle_in(debug: &str, stream_value: u64) -> Option<u64> {
    const POOL: &str = "StreamPool { streams: [";
    let start = debug.find(POOL)? + POOL.len();
    let (items, end) = top_level_items(&debug[start..])?;
    let rest = &debug[start + end..];
    let max_streams: u64 = number_after(rest, "max_streams: ")?;
    if max_streams == 0 || max_streams as usize > items.len() {
        return None;
    }
    let item = items.get((stream_value % max_streams) as usize)?.trim();
    if !item.starts_with("Some(") {
        return None;
    }
    const SYS: &str = "sys: 0x";
    let at = item.find(SYS)? + SYS.len();
    let hex: String = item[at..].chars().take_while(char::is_ascii_hexdigit).collect();
    u64::from_str_radix(&hex, 16).ok().filter(|&h| h != 0)
}

/// Splits a `Debug` list body (the text after its `[`) into its top-level items; returns them
/// and the offset just past the closing `]`. Brackets inside quoted strings do not count.
fn top_level_items(text: &str) -> Option<(Vec<&str>, usize)> {
    let mut items = Vec::new();
    let (mut depth, mut item_start, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for (i, ch) in text.char_indices() {
        if in_string {
            match (escaped, ch) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match ch {
            '"' => in_string = true,
            '(' | '[' | '{' => depth += 1,
            ')' | '}' => depth = depth.checked_sub(1)?,
            ']' if depth == 0 => {
                let last = text[item_start..i].trim();
                if !last.is_empty() {
                    items.push(last);
                }
                return Some((items, i + 1));
            }
            ']' => depth -= 1,
            ',' if depth == 0 => {
                items.push(text[item_start..i].trim());
                item_start = i + 1;
            }
            _ => {}
        }
    }
    None
}

/// The decimal number right after the first `label` in `text`.
fn number_after(text: &str, label: &str) -> Option<u64> {
    let at = text.find(label)? + label.len();
    let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of `format!("{server:?}")` for cubecl-cuda 0.11.3's `CudaServer`, shortened.
    fn server_text(slots: &[Option<u64>], max_streams: usize) -> String {
        let items: Vec<String> = slots
            .iter()
            .map(|s| match s {
                None => "None".to_string(),
                Some(h) => format!(
                    "Some(StreamWrapper {{ stream: Stream {{ sys: {h:#x}, memory_management_gpu: DynamicMemoryManagement \
                     \"cubecl_cuda::compute::storage::gpu::GpuStorage\", drop_queue: PendingDropQueue {{ fences: [] }}, \
                     info_cache: MetadataInfoCache {{ entries: {{[1, 2]: Handle {{ size: 8 }}}} }} }}, cursor: 3, \
                     last_synced: {{0: 2}} }})"
                ),
            })
            .collect();
        format!(
            "CudaServer {{ ctx: CudaContext {{ context: 0x5555aaaa0000, comm_stream: 0x5555bbbb0000, arch: \"sm_90 ]\" }}, \
             device_id: DeviceId {{ type_id: 0, index_id: 0 }}, streams: MultiStream {{ streams: StreamPool {{ streams: [{}], \
             factory: EventStreamBackendWrapper {{ backend: CudaStreamBackend {{ mem_alignment: 256 }} }}, max_streams: {max_streams} }}, \
             failures: Failures {{ }}, max_streams: {max_streams}, shared_bindings_pool: [] }}, graphs: Captures {{ }} }}",
            items.join(", ")
        )
    }

    #[test]
    fn the_slot_of_the_stream_id_modulo_the_pool_size_is_read() {
        let text = server_text(&[Some(0x7f00_1000), None, Some(0x7f00_2000), None, Some(0x7f00_9000)], 4);
        assert_eq!(stream_handle_in(&text, 0), Some(0x7f00_1000));
        assert_eq!(stream_handle_in(&text, 2), Some(0x7f00_2000));
        assert_eq!(stream_handle_in(&text, 6), Some(0x7f00_2000), "6 % 4 = 2");
        assert_eq!(stream_handle_in(&text, 1), None, "an empty slot");
        assert_eq!(stream_handle_in(&text, 4), Some(0x7f00_1000), "special slots (index ≥ max_streams) are never chosen");
    }

    #[test]
    fn brackets_inside_strings_and_nested_lists_do_not_split_items() {
        let text = server_text(&[None, Some(0xabc0)], 2);
        assert!(text.contains("sm_90 ]"));
        assert_eq!(stream_handle_in(&text, 1), Some(0xabc0));
        assert_eq!(stream_handle_in(&text, 3), Some(0xabc0));
    }

    #[test]
    fn other_shapes_give_nothing() {
        assert_eq!(stream_handle_in("CudaServer { streams: [Some(Stream { sys: 0x10 })] }", 0), None, "no pool");
        let truncated = server_text(&[Some(0x10)], 1);
        assert_eq!(
            stream_handle_in(&truncated[..truncated.find("cursor").expect("the sample has a cursor")], 0),
            None,
            "unterminated list"
        );
        let null = server_text(&[Some(0)], 1);
        assert_eq!(stream_handle_in(&null, 0), None, "a null handle");
        let no_max = server_text(&[Some(0x10)], 1).replace("max_streams", "streams_max");
        assert_eq!(stream_handle_in(&no_max, 0), None, "no pool size");
    }
}
