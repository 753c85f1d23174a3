import ArgumentParser
import Domain
import Foundation

struct TemplatesCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "templates",
        abstract: "Work with Liquid templates (render one locally).",
        discussion: """
            Templates are Liquid, as in Shopify, Customer.io and Braze: {{ x | filter: arg }} outputs and
            {% if %}, {% unless %}, {% case %}, {% for %}, {% assign %}, {% capture %}, {% comment %}, {% raw %} tags.
            Filters:
            """ + LiquidTemplate.filterNames.joined(separator: ", ") + ".",
        subcommands: [TemplatesRenderCommand.self])
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
