import Foundation
import Postgres

/// A fresh schema in the test database started by `ops/test`, so each test's tables are its own and tests can
/// run in parallel. `url` puts the schema first on the `search_path`, so unqualified names land in it.
public final class TestDatabase: Sendable {
    public let schema: String
    /// The base URL plus `options=-csearch_path=<schema>`.
    public let url: String
    public let baseURL: String

    private init(baseURL: String, schema: String) {
        self.baseURL = baseURL
        self.schema = schema
        let separator = baseURL.contains("?") ? "&" : "?"
        self.url = baseURL + separator + "options=-csearch_path%3D\(schema)"
    }

    /// Creates a uniquely named schema (throws if `NURTURE_TEST_DATABASE_URL` is unset: run through `ops/test`).
    /// `baseURL`: another cluster (a test's private `PostgresServerProcess`) instead of the shared one.
    public static func create(prefix: String = "t", baseURL: String? = nil) throws -> TestDatabase {
        let base = try baseURL ?? TestEnvironment.databaseURL()
        let database = TestDatabase(baseURL: base, schema: TestEnvironment.uniqueName(prefix))
        let connection = try PostgresConnection(url: base)
        defer { connection.close() }
        try connection.simpleQuery("CREATE SCHEMA \"\(database.schema)\"")
        return database
    }

    /// A new connection whose unqualified names resolve in this schema.
    public func connect(statementTimeoutMilliseconds: Int? = nil) throws -> PostgresConnection {
        try PostgresConnection(url: url, statementTimeoutMilliseconds: statementTimeoutMilliseconds)
    }

    /// Drops the schema and everything in it (errors ignored: the cluster is thrown away after the run).
    public func drop() {
        guard let connection = try? PostgresConnection(url: baseURL) else { return }
        defer { connection.close() }
        try? connection.simpleQuery("DROP SCHEMA IF EXISTS \"\(schema)\" CASCADE")
    }
}
