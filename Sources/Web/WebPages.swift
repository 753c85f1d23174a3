import Domain
import Foundation
import Store

/// The server-rendered pages: small, accessible (labels, fieldsets, a status region, real buttons), readable on
/// a phone (viewport, fluid width, large touch targets), no JavaScript.
enum WebPages {
    static func escape(_ text: String) -> String { HTMLText.escape(text) }

    static func layout(title: String, _ body: String) -> String {
        """
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="robots" content="noindex">
        <title>\(escape(title))</title>
        <style>
        :root { color-scheme: light dark; }
        body { font: 1.0625rem/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; padding: 1.25rem; }
        main { max-width: 34rem; margin: 0 auto; }
        h1 { font-size: 1.5rem; line-height: 1.25; }
        fieldset { border: 1px solid #8888; border-radius: .5rem; margin: 0 0 1rem; padding: .75rem 1rem; }
        legend { font-weight: 600; padding: 0 .25rem; }
        label { display: flex; gap: .75rem; align-items: center; min-height: 2.75rem; cursor: pointer; }
        input[type=checkbox] { width: 1.375rem; height: 1.375rem; flex: none; }
        button { font: inherit; min-height: 2.75rem; padding: .5rem 1.25rem; border-radius: .5rem; border: 1px solid #1a56db;
                 background: #1a56db; color: #fff; cursor: pointer; margin: .25rem .5rem .25rem 0; }
        button.secondary { background: transparent; color: inherit; border-color: #8888; }
        button:focus-visible, input:focus-visible, a:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
        .status { padding: .75rem 1rem; border-radius: .5rem; background: #16a34a22; border: 1px solid #16a34a; }
        .note { color: #666; font-size: .9375rem; }
        @media (prefers-color-scheme: dark) { .note { color: #aaa; } }
        </style>
        </head>
        <body>
        <main>
        \(body)
        </main>
        </body>
        </html>

        """
    }

    static func message(title: String, _ text: String) -> String {
        layout(title: title, "<h1>\(escape(title))</h1>\n<p>\(escape(text))</p>")
    }

    /// GET on an unsubscribe link: one button, no login.
    static func confirmUnsubscribe(action: String, preferencesURL: String, alreadyUnsubscribed: Bool) -> String {
        if alreadyUnsubscribed {
            return layout(title: "You are unsubscribed", """
                <h1>You are unsubscribed</h1>
                <p>You no longer get our marketing messages. Messages you need, such as receipts, still reach you.</p>
                <p><a href="\(escape(preferencesURL))">Manage your preferences</a></p>
                """)
        }
        return layout(title: "Unsubscribe", """
            <h1>Unsubscribe?</h1>
            <p>You will stop getting our marketing messages. Messages you need, such as receipts, still reach you.</p>
            <form method="post" action="\(escape(action))">
            <input type="hidden" name="List-Unsubscribe" value="One-Click">
            <input type="hidden" name="from" value="page">
            <button type="submit">Unsubscribe</button>
            </form>
            <p class="note"><a href="\(escape(preferencesURL))">Choose what you get instead</a></p>
            """)
    }

    static func unsubscribed(preferencesURL: String) -> String {
        layout(title: "You are unsubscribed", """
            <h1>You are unsubscribed</h1>
            <p role="status" class="status">Done: you will not get our marketing messages any more.</p>
            <p><a href="\(escape(preferencesURL))">Changed your mind? Manage your preferences</a></p>
            """)
    }

    static func channelName(_ channel: String) -> String {
        switch channel {
        case "email": return "Email"
        case "sms": return "Text messages (SMS)"
        case "push": return "Push notifications"
        default: return channel.prefix(1).uppercased() + channel.dropFirst()
        }
    }

    static func categoryName(_ category: String) -> String {
        switch category {
        case "marketing": return "News, offers and tips"
        default: return category.replacingOccurrences(of: "_", with: " ").replacingOccurrences(of: "-", with: " ").capitalized
        }
    }

    /// The preference centre: one fieldset per channel, one checkbox per category.
    static func preferences(action: String, preferences: [WebPreference], unsubscribed: Bool, status: String?) -> String {
        var body = "<h1>Your message preferences</h1>\n"
        if let status { body += "<p role=\"status\" class=\"status\" id=\"status\">\(escape(status))</p>\n" }
        if unsubscribed {
            body += "<p>You are unsubscribed from all marketing messages. Tick what you would like to get again, then save.</p>\n"
        } else {
            body += "<p>Choose what we may send you. Untick something to stop it.</p>\n"
        }
        body += "<form method=\"post\" action=\"\(escape(action))\">\n"
        var channels: [String] = []
        for p in preferences where !channels.contains(p.channel) { channels.append(p.channel) }
        if channels.isEmpty { body += "<p>There is nothing to choose from at the moment.</p>\n" }
        for channel in channels {
            body += "<fieldset>\n<legend>\(escape(channelName(channel)))</legend>\n"
            for p in preferences where p.channel == channel {
                let id = "c-\(p.channel)-\(p.category)".map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "_" }
                body += "<label for=\"\(escape(String(id)))\"><input type=\"checkbox\" id=\"\(escape(String(id)))\" name=\"c\" "
                    + "value=\"\(escape(p.channel)):\(escape(p.category))\"\(p.granted ? " checked" : "")> "
                    + "\(escape(categoryName(p.category)))</label>\n"
            }
            body += "</fieldset>\n"
        }
        body += """
            <p class="note">Transactional messages (receipts, password resets, security notices) are always sent.</p>
            <button type="submit" name="action" value="save">Save preferences</button>
            <button type="submit" name="action" value="unsubscribe_all" class="secondary">Unsubscribe from everything</button>
            </form>

            """
        return layout(title: "Your message preferences", body)
    }
}
