//! The topic view's small chart, drawn server-side as inline SVG: settled
//! jobs per minute (bars) and queue depth (line) over the last hour.

use std::fmt::Write as _;

use agw_storage::MinuteActivity;

const W: f64 = 180.0;
const H: f64 = 36.0;

/// Queue depth at the end of each minute, worked back from the live count
/// now: depth(m) = live - created after m + settled after m (never below 0).
pub(crate) fn depth_series(minutes: &[MinuteActivity], live_now: i64) -> Vec<i64> {
    let mut out = vec![0; minutes.len()];
    let mut depth = live_now;
    for (i, m) in minutes.iter().enumerate().rev() {
        out[i] = depth.max(0);
        depth = depth - m.created + m.settled;
    }
    out
}

/// The chart: `minutes` oldest first. Accessible name and a text summary
/// in `<title>`/`<desc>`.
pub(crate) fn svg(topic: &str, minutes: &[MinuteActivity], live_now: i64) -> String {
    let depth = depth_series(minutes, live_now);
    let n = minutes.len().max(1) as f64;
    let max_tp = minutes.iter().map(|m| m.settled).max().unwrap_or(0).max(1) as f64;
    let max_depth = depth.iter().copied().max().unwrap_or(0).max(1) as f64;
    let total: i64 = minutes.iter().map(|m| m.settled).sum();
    let bar_w = W / n;
    let mut s = String::with_capacity(4096);
    let _ = write!(
        s,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-labelledby="c-{id}"><title id="c-{id}">{t}: {total} settled in the last hour, queue depth now {live_now}</title>"#,
        id = super::view::slug(topic),
        t = super::view::esc(topic),
    );
    for (i, m) in minutes.iter().enumerate() {
        if m.settled == 0 {
            continue;
        }
        let h = (m.settled as f64 / max_tp) * (H - 4.0);
        let _ = write!(
            s,
            r#"<rect class="tp" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"/>"#,
            i as f64 * bar_w,
            H - h,
            (bar_w - 0.5).max(0.5),
            h
        );
    }
    let points: Vec<String> = depth
        .iter()
        .enumerate()
        .map(|(i, d)| {
            format!(
                "{:.1},{:.1}",
                (i as f64 + 0.5) * bar_w,
                H - 1.0 - (*d as f64 / max_depth) * (H - 4.0)
            )
        })
        .collect();
    let _ = write!(
        s,
        r#"<polyline class="depth" fill="none" points="{}"/></svg>"#,
        points.join(" ")
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_works_back_from_now() {
        let m = |created, settled| MinuteActivity { created, settled };
        // 3 created in minute 0, 1 settled in minute 1, 1 created in minute 2; 3 live now.
        let d = depth_series(&[m(3, 0), m(0, 1), m(1, 0)], 3);
        assert_eq!(d, vec![3, 2, 3]);
        assert_eq!(depth_series(&[m(0, 0)], 0), vec![0]);
        let svg = svg("a/b", &[m(1, 1), m(0, 2)], 1);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches("<rect").count(), 2);
    }
}
