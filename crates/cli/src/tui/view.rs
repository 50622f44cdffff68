//! Drawing the chat screen from [`ChatState`].
//!
//! ```text
//!  chat with bob · connected · not verified           <- status line
//!  ⚠ bob's identity key changed ...                   <- only after a key change
//!  12:00 bob: hello                                   <- history, newest at the bottom
//!  12:01 alice: hi ✓
//!  new message from carol                             <- notice, if any
//! ┌message (Enter send · Esc quit · PgUp/PgDn scroll)┐
//! │hi there_                                         │
//! └──────────────────────────────────────────────────┘
//! ```

use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph};
use ratatui::Frame;
use unicode_width::UnicodeWidthChar;

use super::state::{ChatLine, ChatState, Connection, Delivery, Notice, Trust};
use crate::display::{format_clock, sanitize};

/// Draws the whole screen. Takes the state mutably only to clamp its scroll offset to what the
/// history's height allows.
pub(crate) fn draw(frame: &mut Frame<'_>, state: &mut ChatState) {
    let banner = state.trust == Trust::KeyChanged;
    let [status_area, banner_area, history_area, notice_area, input_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::from(banner)),
        Constraint::Min(1),
        Constraint::Length(u16::from(state.notice.is_some())),
        Constraint::Length(3),
    ])
    .areas(frame.area());

    frame.render_widget(Paragraph::new(status_line(state)), status_area);
    if banner {
        let peer = sanitize(&state.peer);
        let text = format!(
            " ⚠ {peer}'s identity key changed. Compare safety numbers: sotto verify {peer} "
        );
        let style = Style::new()
            .fg(Color::White)
            .bg(Color::Red)
            .add_modifier(Modifier::BOLD);
        frame.render_widget(Paragraph::new(Line::styled(text, style)), banner_area);
    }
    draw_history(frame, state, history_area);
    if let Some(notice) = &state.notice {
        let line = match notice {
            Notice::Info(text) => Line::styled(sanitize(text), Style::new().fg(Color::Yellow)),
            Notice::Error(text) => Line::styled(sanitize(text), Style::new().fg(Color::Red)),
        };
        frame.render_widget(Paragraph::new(line), notice_area);
    }
    draw_input(frame, state, input_area);
}

fn status_line(state: &ChatState) -> Line<'static> {
    let dim = Style::new().fg(Color::DarkGray);
    let (connection, connection_style) = match state.connection {
        Connection::Connected => ("connected", Style::new().fg(Color::Green)),
        Connection::Disconnected => ("disconnected", Style::new().fg(Color::Red)),
    };
    let (trust, trust_style) = match state.trust {
        Trust::Verified => ("verified", Style::new().fg(Color::Green)),
        Trust::Unverified => ("not verified", Style::new().fg(Color::Yellow)),
        Trust::KeyChanged => (
            "KEY CHANGED",
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        ),
    };
    Line::from(vec![
        Span::styled(" chat with ", dim),
        Span::styled(
            sanitize(&state.peer),
            Style::new().add_modifier(Modifier::BOLD),
        ),
        Span::styled(" · ", dim),
        Span::styled(connection, connection_style),
        Span::styled(" · ", dim),
        Span::styled(trust, trust_style),
    ])
}

fn draw_history(frame: &mut Frame<'_>, state: &mut ChatState, area: Rect) {
    let width = usize::from(area.width).max(1);
    let height = usize::from(area.height);
    let lines: Vec<Line<'static>> = state
        .history
        .iter()
        .flat_map(|m| message_lines(m, width))
        .collect();
    let max_scroll = lines.len().saturating_sub(height);
    state.scroll = state.scroll.min(max_scroll);
    let end = lines.len() - state.scroll;
    let start = end.saturating_sub(height);
    // Newest at the bottom: pad above when the history is shorter than the area.
    let padding = height - (end - start);
    let mut shown = vec![Line::default(); padding];
    shown.extend(lines[start..end].iter().cloned());
    frame.render_widget(Paragraph::new(shown), area);
}

/// One message as screen lines of at most `width` columns: `12:00 bob: text`, wrapped.
fn message_lines(message: &ChatLine, width: usize) -> Vec<Line<'static>> {
    let author_style = if message.outgoing {
        Style::new().fg(Color::Green).add_modifier(Modifier::BOLD)
    } else {
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    };
    let mut pieces: Vec<(String, Style)> = vec![
        (
            format!("{} ", format_clock(message.timestamp_ms)),
            Style::new().fg(Color::DarkGray),
        ),
        (format!("{}:", sanitize(&message.author)), author_style),
        (format!(" {}", sanitize(&message.text)), Style::new()),
    ];
    match message.delivery {
        Some((_, Delivery::Sending)) => {
            pieces.push((" …".into(), Style::new().fg(Color::DarkGray)))
        }
        Some((_, Delivery::Sent)) => pieces.push((" ✓".into(), Style::new().fg(Color::DarkGray))),
        Some((_, Delivery::Failed)) => {
            pieces.push((" ✗ not sent".into(), Style::new().fg(Color::Red)))
        }
        None => {}
    }
    wrap(&pieces, width)
}

/// Breaks styled text into lines of at most `width` columns (by display width; a character
/// wider than the whole line gets a line of its own).
fn wrap(pieces: &[(String, Style)], width: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut current = String::new();
    let mut column = 0;
    for (text, style) in pieces {
        for c in text.chars() {
            let w = c.width().unwrap_or(0);
            if column + w > width && column > 0 {
                if !current.is_empty() {
                    spans.push(Span::styled(std::mem::take(&mut current), *style));
                }
                lines.push(Line::from(std::mem::take(&mut spans)));
                column = 0;
            }
            current.push(c);
            column += w;
        }
        if !current.is_empty() {
            spans.push(Span::styled(std::mem::take(&mut current), *style));
        }
    }
    if !spans.is_empty() || lines.is_empty() {
        lines.push(Line::from(spans));
    }
    lines
}

fn draw_input(frame: &mut Frame<'_>, state: &ChatState, area: Rect) {
    let block = Block::new()
        .borders(Borders::ALL)
        .title(" message (Enter send · Esc quit · PgUp/PgDn scroll) ");
    let inner = block.inner(area);
    let width = usize::from(inner.width);
    // Show the end of a long input, where the cursor is.
    let text = sanitize(&state.input);
    let mut shown = String::new();
    let mut used = 0;
    for c in text.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w >= width.max(1) {
            break;
        }
        shown.insert(0, c);
        used += w;
    }
    frame.render_widget(Paragraph::new(shown).block(block), area);
    if inner.width > 0 && inner.height > 0 {
        let x = inner.x
            + u16::try_from(used)
                .unwrap_or(inner.width - 1)
                .min(inner.width - 1);
        frame.set_cursor_position(Position::new(x, inner.y));
    }
}

#[cfg(test)]
mod tests {
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::Terminal;

    use super::*;

    const NOON: u64 = 1_748_779_205_000;

    fn render(state: &mut ChatState, width: u16, height: u16) -> (Vec<String>, Buffer) {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, state)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let rows = (0..height)
            .map(|y| {
                (0..width)
                    .map(|x| buffer[(x, y)].symbol().to_string())
                    .collect::<String>()
            })
            .collect();
        (rows, buffer)
    }

    fn line(author: &str, outgoing: bool, text: &str) -> ChatLine {
        ChatLine {
            author: author.into(),
            outgoing,
            text: text.into(),
            timestamp_ms: NOON,
            delivery: None,
        }
    }

    fn row_with(rows: &[String], needle: &str) -> usize {
        rows.iter()
            .position(|r| r.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not on screen:\n{}", rows.join("\n")))
    }

    #[test]
    fn history_incoming_message_and_input_line_are_drawn() {
        let history = vec![
            line("bob", false, "hello alice"),
            line("alice", true, "hi bob"),
        ];
        let mut state = ChatState::new("alice".into(), "bob".into(), history, Trust::Unverified);
        let (rows, _) = render(&mut state, 60, 12);
        assert!(
            rows[0].contains("chat with bob · connected · not verified"),
            "{}",
            rows[0]
        );
        let first = row_with(&rows, "12:00 bob: hello alice");
        let second = row_with(&rows, "12:00 alice: hi bob");
        assert!(first < second, "oldest first");
        assert_eq!(second, 12 - 4, "newest just above the input box");

        state.on_message("bob".into(), "are you there?".into(), NOON + 60_000);
        for c in "typing".chars() {
            state.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE), NOON);
        }
        let (rows, _) = render(&mut state, 60, 12);
        let newest = row_with(&rows, "12:01 bob: are you there?");
        assert!(newest > row_with(&rows, "hi bob"));
        let input = row_with(&rows, "│typing");
        assert!(rows[input - 1].contains("message (Enter send"));
    }

    #[test]
    fn sending_marks_and_key_change_banner() {
        let mut state = ChatState::new("alice".into(), "bob".into(), Vec::new(), Trust::Verified);
        let (rows, _) = render(&mut state, 70, 10);
        assert!(rows[0].contains("verified"));
        assert!(!rows[0].contains("not verified"));

        for c in "ping".chars() {
            state.on_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE), NOON);
        }
        state.on_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE), NOON);
        let (rows, _) = render(&mut state, 70, 10);
        row_with(&rows, "alice: ping …");
        state.on_send_result(0, Ok(()));
        let (rows, _) = render(&mut state, 70, 10);
        row_with(&rows, "alice: ping ✓");

        state.on_identity_changed("bob");
        let (rows, buffer) = render(&mut state, 70, 10);
        assert!(rows[0].contains("KEY CHANGED"));
        let banner = row_with(&rows, "bob's identity key changed");
        assert_eq!(banner, 1);
        assert_eq!(buffer[(2, 1)].bg, Color::Red);
    }

    #[test]
    fn hostile_text_is_shown_escaped() {
        let history = vec![line("bob", false, "\u{1b}[2Jgone\nfake line")];
        let mut state = ChatState::new("alice".into(), "bob".into(), history, Trust::Unverified);
        let (rows, _) = render(&mut state, 80, 8);
        row_with(&rows, "bob: \\u{1b}[2Jgone\\nfake line");
        assert!(!rows.iter().any(|r| r.contains('\u{1b}')));
    }

    #[test]
    fn long_messages_wrap_and_scroll() {
        let long = "word ".repeat(40);
        let history: Vec<ChatLine> = (0..10)
            .map(|i| line("bob", false, &format!("m{i} {long}")))
            .collect();
        let mut state = ChatState::new("alice".into(), "bob".into(), history, Trust::Unverified);
        let (rows, _) = render(&mut state, 30, 12);
        assert!(rows.iter().all(|r| r.chars().count() == 30));
        row_with(&rows, "m9");
        assert!(!rows.iter().any(|r| r.contains("m0 ")));

        // Scroll far up: clamped so the oldest message is at the top.
        state.scroll = usize::MAX;
        let (rows, _) = render(&mut state, 30, 12);
        assert_eq!(row_with(&rows, "12:00 bob: m0"), 1);
        assert!(state.scroll < usize::MAX);
    }

    #[test]
    fn wrap_respects_width_and_wide_characters() {
        let lines = wrap(&[("日本語テキスト".into(), Style::new())], 5);
        let widths: Vec<usize> = lines.iter().map(Line::width).collect();
        assert_eq!(widths, vec![4, 4, 4, 2]);
        assert_eq!(wrap(&[(String::new(), Style::new())], 5).len(), 1);
    }

    #[test]
    fn tiny_terminals_do_not_panic() {
        let mut state = ChatState::new(
            "alice".into(),
            "bob".into(),
            vec![line("bob", false, "hi")],
            Trust::KeyChanged,
        );
        state.input = "x".repeat(100);
        for (w, h) in [(1, 1), (2, 3), (5, 5), (0, 0)] {
            let _ = render(&mut state, w, h);
        }
    }
}
