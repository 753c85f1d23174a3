import ArgumentParser
import Channels
import Domain
import Foundation
import Postgres
import Runtime

struct TemplatesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "templates",
        abstract: "Work with Liquid templates: render one locally, or preview an applied one for a contact.",
        discussion: """
            Templates are Liquid, as in Shopify, Customer.io and Braze: {{ x | filter: arg }} outputs and
            {% if %}, {% unless %}, {% case %}, {% for %}, {% assign %}, {% capture %}, {% comment %}, {% raw %} tags.
            Filters:
            """ + LiquidTemplate.filterNames.joined(separator: ", ") + ".",
        subcommands: [TemplatesRenderCommand.self, TemplatesPreviewCommand.self])
}

struct TemplatesRenderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "Render a Liquid template with JSON data and write the result to stdout, byte for byte.",
        discussion: """
            Reads the template from FILE, or from stdin when FILE is `-`. The output is exactly what the template
            produces: no newline is added. `now` is the current time (or --now) unless --data defines it.
            A syntax or render error prints `line:column: message` on stderr and exits 1.
            Examples:
              nurture templates render welcome.liquid --data '{"contact": {"first_name": "Ann"}}'
              echo -n 'Hi {{ name | default: "there" }}' | nurture templates render -
              nurture templates render offer.html --html --now 2026-11-22T10:00:00Z \\
                  --data '{"contact": {"first_name": "<Ann>"}}'
            With --html every {{ }} output is HTML-escaped unless its last filter is `raw`.
            """)

    @Argument(help: ArgumentHelp("The template file, or - for stdin.", valueName: "FILE"))
    var file: String

    @Option(help: ArgumentHelp("The render context, a JSON object.", valueName: "JSON"))
    var data: String = "{}"

    @Flag(help: "HTML mode: escape every {{ }} output unless it ends in | raw.")
    var html = false

    @Option(help: ArgumentHelp("The time `now` and the date filter's \"now\" mean (default: the current time).", valueName: "ISO8601"))
    var now: String?

    @Option(help: ArgumentHelp("The IANA time zone dates are printed in.", valueName: "ZONE"))
    var timezone: String = "UTC"

    func run() async throws {
        let source: String
        if file == "-" {
            source = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
        } else {
            guard let contents = FileManager.default.contents(atPath: file) else {
                throw UserError("cannot read \(file)")
            }
            source = String(decoding: contents, as: UTF8.self)
        }
        let context: Value
        do {
            context = try Value(jsonText: data)
        } catch {
            throw UserError("--data is not valid JSON: \(data)")
        }
        guard case .object = context else { throw UserError("--data must be a JSON object, got: \(data)") }
        var options = RenderOptions(htmlEscape: html)
        if let now {
            guard let date = Value.parseTime(now) else { throw UserError("--now is not an ISO-8601 time: \(now)") }
            options.now = date
        }
        guard let zone = TimeZone(identifier: timezone) else { throw UserError("--timezone: unknown time zone \(timezone)") }
        options.timeZone = zone

        let output: String
        do {
            let template = try LiquidTemplate.parse(source)
            output = try template.render(context, options: options)
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            throw ExitCode(1)
        }
        FileHandle.standardOutput.write(Data(output.utf8))
    }
}

/// `nurture templates preview NAME --contact ID`: an applied template rendered for a real contact, as a workflow
/// send would render it. Nothing is sent or recorded.
struct TemplatesPreviewCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "preview",
        abstract: "Render an applied template for a real contact, as a workflow send would (nothing is sent).",
        discussion: """
            Renders the current version of template NAME (applied with `nurture
            apply`) with the context a workflow `send:` step gives it:
              contact          the contact as workflows see it: attributes,
                               email, phone, timezone, tags, score, stage, ...
              event            --event (default {}): in a workflow, the
                               triggering event (event.properties.*, ...)
              workflow         {} (in a workflow: its name, version and step)
              unsubscribe_url  a one-click unsubscribe link for the contact
              preferences_url  the contact's preference-centre link
              now              the installation clock's time (see `nurture clock`)
            Links are signed with NURTURE_SECRET; without it they are signed with
            a dummy key and will not work. The recipient and sender are chosen
            as for a real send; a contact without an address for the template's
            channel is an error (a workflow would record `no_address`).

            ID is an app user id (external_id), an email address, or a numeric
            contact id (tried in that order).

            Prints the recipient, then each part the template has (subject, html,
            text, body) under a `--- part ---` line; --json prints
            {"template", "version", "channel", "category", "contact_id",
            "contact_key", "to", "from", "subject", "html", "text", "body",
            "headers"} (absent parts are null). A render error names its line
            and column and exits 1, as do an unknown template or contact.

            Examples:
              nurture templates preview welcome-1 --contact u-42
              nurture templates preview cart-1 --contact ann@example.com \\
                  --event '{"name": "Product Added", "properties": {"product_name": "Lamp", "price": 39}}'
              nurture templates preview welcome-1 --contact 17 --json | jq -r .html
            """)

    @OptionGroup var connection: ConnectionOptions

    @Argument(help: "The applied template's name.")
    var name: String

    @Option(help: ArgumentHelp("The contact: user id, email address or numeric id.", valueName: "ID"))
    var contact: String

    @Option(help: ArgumentHelp("What the template sees as `event`, a JSON object.", valueName: "JSON"))
    var event: String = "{}"

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let eventValue: Value
        do {
            eventValue = try Value(jsonText: event)
        } catch {
            throw UserError("--event is not valid JSON: \(event)")
        }
        guard case .object = eventValue else { throw UserError("--event must be a JSON object, got: \(event)") }
        let config = try connection.config()
        let db = try connection.database(config)
        defer { db.close() }
        let now = try ContactsCLI.clock(config, db).now()
        let contactId = try ContactsCLI.resolve(contact, db)
        let preview: TemplatePreview
        do {
            preview = try TemplatePreview.render(template: name, contactId: contactId, event: eventValue, config: config, now: now, on: db)
        } catch {
            if let liquid = error as? LiquidError { throw UserError("template \(name): \(liquid)") }
            if error is ComposeError || error is TemplatePreview.UnknownTemplate || error is TemplatePreview.ContactGone {
                throw UserError("\(error)")
            }
            throw error
        }
        let message = preview.message
        if json {
            try printJSON(TemplatePreviewJSON(preview: preview))
            return
        }
        print("template \(preview.template) (v\(preview.version)), \(message.channel.rawValue) \(message.category.rawValue), "
              + "for contact \(preview.contactId) (\(message.contactId))")
        if let to = message.to { print("to: \(to)") }
        if let from = message.from { print("from: \(from)") }
        for header in message.headers { print("\(header.name): \(header.value)") }
        for (part, text) in [("subject", message.subject), ("html", message.html), ("text", message.text), ("body", message.body)] {
            guard let text else { continue }
            print("--- \(part) ---")
            print(text.hasSuffix("\n") ? String(text.dropLast()) : text)
        }
    }
}

/// The `--json` shape of `templates preview`; absent parts are null.
private struct TemplatePreviewJSON: Encodable {
    let preview: TemplatePreview

    private struct Header: Encodable {
        let name: String
        let value: String
    }

    enum CodingKeys: String, CodingKey {
        case template, version, channel, category, contactId = "contact_id", contactKey = "contact_key", to, from,
             subject, html, text, body, headers
    }

    func encode(to encoder: any Encoder) throws {
        let m = preview.message
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(preview.template, forKey: .template)
        try c.encode(preview.version, forKey: .version)
        try c.encode(m.channel.rawValue, forKey: .channel)
        try c.encode(m.category.rawValue, forKey: .category)
        try c.encode(preview.contactId, forKey: .contactId)
        try c.encode(m.contactId, forKey: .contactKey)
        try c.encode(m.to, forKey: .to)
        try c.encode(m.from, forKey: .from)
        try c.encode(m.subject, forKey: .subject)
        try c.encode(m.html, forKey: .html)
        try c.encode(m.text, forKey: .text)
        try c.encode(m.body, forKey: .body)
        try c.encode(m.headers.map { Header(name: $0.name, value: $0.value) }, forKey: .headers)
    }
}
